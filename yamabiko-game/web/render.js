// Drawing the arena on a canvas. Names are drawn with fillText: text, never markup.

const TAU = Math.PI * 2;

/** A colour per seat: 16 hues spread so neighbours differ. */
export function seatColor(slot) {
  const hue = (slot * 137.508 + 200) % 360;
  return { hue, fill: `hsl(${hue} 75% 58%)`, dark: `hsl(${hue} 70% 34%)`, light: `hsl(${hue} 90% 78%)` };
}

export function createRenderer(canvas) {
  const ctx = canvas.getContext("2d");
  let scale = 1; // CSS pixels per sub-unit
  let dpr = 1;
  let ox = 0;
  let oy = 0;
  // On a tall screen (a phone held upright) the arena is drawn turned a quarter turn
  // clockwise, so it fills the screen: arena x runs down, arena y runs right to left.
  let rot = false;
  let arenaH = 0; // the arena's height in sub-units (for the turned mapping)
  let dispW = 1; // the drawn rectangle, in sub-units
  let dispH = 1;
  const trails = new Map(); // slot → [{x, y}]
  const particles = [];
  const floaters = [];
  let shake = 0;
  let flash = 0;
  let lastNow = 0;

  function resize(params) {
    const rect = canvas.getBoundingClientRect();
    dpr = window.devicePixelRatio || 1;
    canvas.width = Math.max(1, Math.round(rect.width * dpr));
    canvas.height = Math.max(1, Math.round(rect.height * dpr));
    if (!params) return;
    const pad = 6;
    rot = rect.height > rect.width * 1.15;
    arenaH = params.height;
    dispW = rot ? params.height : params.width;
    dispH = rot ? params.width : params.height;
    scale = Math.min((rect.width - 2 * pad) / dispW, (rect.height - 2 * pad) / dispH);
    ox = (rect.width - dispW * scale) / 2;
    oy = (rect.height - dispH * scale) / 2;
  }

  /** An arena position (sub-units) → CSS pixels. */
  const P = (x, y) => (rot ? [ox + (arenaH - y) * scale, oy + x * scale] : [ox + x * scale, oy + y * scale]);
  /** An arena direction → a screen direction. */
  const V = (x, y) => (rot ? [-y, x] : [x, y]);
  /** A screen direction → an arena direction (for the keys and the touch stick). */
  function toArena(sx, sy) {
    return rot ? [sy + 0, -sx + 0] : [sx, sy];
  }

  /** A burst where someone was tagged. */
  function burst(x, y, hue) {
    const [px, py] = P(x, y);
    for (let i = 0; i < 36; i++) {
      const a = Math.random() * TAU;
      const v = 60 + Math.random() * 260;
      particles.push({ x: px, y: py, vx: Math.cos(a) * v, vy: Math.sin(a) * v, life: 0.6 + Math.random() * 0.5, age: 0, hue });
    }
    floaters.push({ x: px, y: py, text: "鬼!", age: 0, life: 1.1 });
  }

  function bump(strength) {
    shake = Math.max(shake, strength);
  }

  function flashScreen() {
    flash = 1;
  }

  function arena(params, danger) {
    const w = dispW * scale;
    const h = dispH * scale;
    const g = ctx.createRadialGradient(ox + w / 2, oy + h / 2, 10, ox + w / 2, oy + h / 2, Math.max(w, h) * 0.7);
    g.addColorStop(0, "#1d2a4f");
    g.addColorStop(1, "#121833");
    ctx.fillStyle = g;
    roundRect(ox, oy, w, h, 18 * Math.min(1, scale * 8));
    ctx.fill();
    // Grid every 100 arena units.
    ctx.save();
    ctx.clip();
    ctx.strokeStyle = "rgba(140, 170, 255, 0.07)";
    ctx.lineWidth = 1;
    const step = 100 * 8 * scale;
    ctx.beginPath();
    for (let x = ox + step; x < ox + w - 1; x += step) {
      ctx.moveTo(x, oy);
      ctx.lineTo(x, oy + h);
    }
    for (let y = oy + step; y < oy + h - 1; y += step) {
      ctx.moveTo(ox, y);
      ctx.lineTo(ox + w, y);
    }
    ctx.stroke();
    // The centre mark.
    ctx.strokeStyle = "rgba(140, 170, 255, 0.12)";
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.arc(ox + w / 2, oy + h / 2, 90 * 8 * scale, 0, TAU);
    ctx.stroke();
    // Danger: red edges when "it" is near (for whoever is not "it").
    if (danger > 0) {
      const v = ctx.createRadialGradient(ox + w / 2, oy + h / 2, Math.min(w, h) * 0.35, ox + w / 2, oy + h / 2, Math.max(w, h) * 0.75);
      v.addColorStop(0, "rgba(255, 40, 60, 0)");
      v.addColorStop(1, `rgba(255, 40, 60, ${0.35 * danger})`);
      ctx.fillStyle = v;
      ctx.fillRect(ox, oy, w, h);
    }
    ctx.restore();
    ctx.strokeStyle = "rgba(150, 180, 255, 0.35)";
    ctx.lineWidth = 2;
    roundRect(ox, oy, w, h, 18 * Math.min(1, scale * 8));
    ctx.stroke();
  }

  function roundRect(x, y, w, h, r) {
    ctx.beginPath();
    ctx.moveTo(x + r, y);
    ctx.arcTo(x + w, y, x + w, y + h, r);
    ctx.arcTo(x + w, y + h, x, y + h, r);
    ctx.arcTo(x, y + h, x, y, r);
    ctx.arcTo(x, y, x + w, y, r);
    ctx.closePath();
  }

  function trail(p, r) {
    let t = trails.get(p.slot);
    if (!t) trails.set(p.slot, (t = []));
    const [tx, ty] = P(p.x, p.y);
    t.push({ x: tx, y: ty });
    if (t.length > 12) t.shift();
    const color = p.it ? "255, 70, 80" : "180, 200, 255";
    for (let i = 0; i < t.length - 1; i++) {
      const a = (i / t.length) * (p.it ? 0.28 : 0.12);
      ctx.fillStyle = `rgba(${color}, ${a})`;
      ctx.beginPath();
      ctx.arc(t[i].x, t[i].y, r * (0.45 + 0.5 * (i / t.length)), 0, TAU);
      ctx.fill();
    }
  }

  function body(p, r, now, immuneFrac) {
    const [x, y] = P(p.x, p.y);
    const c = seatColor(p.slot);
    ctx.save();
    if (p.away) ctx.globalAlpha = 0.35;
    if (p.it) {
      const pulse = 0.5 + 0.5 * Math.sin(now / 120);
      ctx.shadowColor = "rgba(255, 50, 60, 0.9)";
      ctx.shadowBlur = 18 + 14 * pulse;
    } else {
      ctx.shadowColor = "rgba(0, 0, 0, 0.45)";
      ctx.shadowBlur = 10;
      ctx.shadowOffsetY = 3;
    }
    const g = ctx.createRadialGradient(x - r * 0.35, y - r * 0.4, r * 0.1, x, y, r);
    if (p.it) {
      g.addColorStop(0, "#ff8a7a");
      g.addColorStop(1, "#c4142c");
    } else {
      g.addColorStop(0, c.light);
      g.addColorStop(1, c.fill);
    }
    ctx.fillStyle = g;
    ctx.beginPath();
    ctx.arc(x, y, r, 0, TAU);
    ctx.fill();
    ctx.shadowColor = "transparent";
    ctx.lineWidth = Math.max(1.5, r * 0.09);
    ctx.strokeStyle = p.me ? "#ffffff" : p.it ? "#ffd0d0" : c.dark;
    ctx.stroke();
    if (p.me) {
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = "rgba(255,255,255,0.5)";
      ctx.beginPath();
      ctx.arc(x, y, r + 5, 0, TAU);
      ctx.stroke();
    }
    // Eyes that look where the circle goes.
    const [svx, svy] = V(p.vx, p.vy);
    const speed = Math.hypot(svx, svy);
    const lx = speed > 1 ? svx / speed : 0;
    const ly = speed > 1 ? svy / speed : 0.15;
    for (const side of [-1, 1]) {
      const ex = x + side * r * 0.32 + lx * r * 0.12;
      const ey = y - r * 0.12 + ly * r * 0.1;
      ctx.fillStyle = "#fff";
      ctx.beginPath();
      ctx.ellipse(ex, ey, r * 0.19, r * 0.24, 0, 0, TAU);
      ctx.fill();
      ctx.fillStyle = "#1b1530";
      ctx.beginPath();
      ctx.arc(ex + lx * r * 0.08, ey + ly * r * 0.1, r * 0.1, 0, TAU);
      ctx.fill();
      if (p.it) {
        // Fierce brows.
        ctx.strokeStyle = "#3a0008";
        ctx.lineWidth = Math.max(1.5, r * 0.1);
        ctx.beginPath();
        ctx.moveTo(ex - side * r * 0.2, ey - r * 0.36);
        ctx.lineTo(ex + side * r * 0.14, ey - r * 0.22);
        ctx.stroke();
      }
    }
    if (p.it) {
      // Horns.
      ctx.fillStyle = "#ffe7a8";
      for (const side of [-1, 1]) {
        ctx.beginPath();
        ctx.moveTo(x + side * r * 0.55, y - r * 0.72);
        ctx.lineTo(x + side * r * 0.82, y - r * 1.28);
        ctx.lineTo(x + side * r * 0.22, y - r * 0.92);
        ctx.closePath();
        ctx.fill();
      }
      if (immuneFrac > 0) {
        ctx.strokeStyle = "rgba(255, 230, 160, 0.9)";
        ctx.lineWidth = 3;
        ctx.setLineDash([4, 4]);
        ctx.beginPath();
        ctx.arc(x, y, r + 9, -Math.PI / 2, -Math.PI / 2 + TAU * immuneFrac);
        ctx.stroke();
        ctx.setLineDash([]);
      }
    }
    ctx.restore();
    // The name, above.
    ctx.save();
    const size = Math.max(11, Math.min(16, r * 0.62));
    ctx.font = `${p.me ? 700 : 600} ${size}px system-ui, "Hiragino Sans", "Noto Sans JP", sans-serif`;
    ctx.textAlign = "center";
    ctx.textBaseline = "bottom";
    ctx.lineWidth = 3;
    ctx.strokeStyle = "rgba(10, 12, 30, 0.8)";
    const label = p.away ? `${p.name} …` : p.name;
    const ny = y - r - (p.it ? r * 0.45 : 6);
    ctx.globalAlpha = p.away ? 0.5 : 1;
    ctx.strokeText(label, x, ny);
    ctx.fillStyle = p.me ? "#ffffff" : p.it ? "#ffb3b3" : "rgba(230, 236, 255, 0.92)";
    ctx.fillText(label, x, ny);
    ctx.restore();
  }

  function effects(dt) {
    for (let i = particles.length - 1; i >= 0; i--) {
      const q = particles[i];
      q.age += dt;
      if (q.age >= q.life) {
        particles.splice(i, 1);
        continue;
      }
      q.x += q.vx * dt;
      q.y += q.vy * dt;
      q.vx *= 0.92;
      q.vy *= 0.92;
      const a = 1 - q.age / q.life;
      ctx.fillStyle = `hsla(${q.hue}, 95%, 65%, ${a})`;
      ctx.beginPath();
      ctx.arc(q.x, q.y, 2 + 3 * a, 0, TAU);
      ctx.fill();
    }
    for (let i = floaters.length - 1; i >= 0; i--) {
      const f = floaters[i];
      f.age += dt;
      if (f.age >= f.life) {
        floaters.splice(i, 1);
        continue;
      }
      const a = 1 - f.age / f.life;
      ctx.save();
      ctx.font = `800 ${22 + 10 * (1 - a)}px system-ui, "Hiragino Sans", "Noto Sans JP", sans-serif`;
      ctx.textAlign = "center";
      ctx.fillStyle = `rgba(255, 215, 120, ${a})`;
      ctx.strokeStyle = `rgba(60, 0, 10, ${a})`;
      ctx.lineWidth = 4;
      ctx.strokeText(f.text, f.x, f.y - 30 - 40 * (1 - a));
      ctx.fillText(f.text, f.x, f.y - 30 - 40 * (1 - a));
      ctx.restore();
    }
  }

  /**
   * frame: { params, players: [{ slot, x, y, vx, vy, name, it, me, away }], immuneFrac,
   *          danger (0–1) }
   */
  function draw(frame, now) {
    const dt = lastNow ? Math.min(0.1, (now - lastNow) / 1000) : 0;
    lastNow = now;
    const w = canvas.width / dpr;
    const h = canvas.height / dpr;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, h);
    if (!frame.params) return;
    ctx.save();
    if (shake > 0) {
      ctx.translate((Math.random() - 0.5) * 12 * shake, (Math.random() - 0.5) * 12 * shake);
      shake = Math.max(0, shake - dt * 3);
    }
    arena(frame.params, frame.danger || 0);
    const r = frame.params.radius * scale;
    const present = new Set(frame.players.map((p) => p.slot));
    for (const slot of trails.keys()) if (!present.has(slot)) trails.delete(slot);
    for (const p of frame.players) if (!p.away) trail(p, r);
    // "It" and me on top.
    const order = [...frame.players].sort((a, b) => (a.it - b.it) || (a.me - b.me));
    for (const p of order) body(p, r, now, p.it ? frame.immuneFrac : 0);
    effects(dt);
    ctx.restore();
    if (flash > 0) {
      ctx.fillStyle = `rgba(255, 60, 70, ${0.35 * flash})`;
      ctx.fillRect(0, 0, w, h);
      flash = Math.max(0, flash - dt * 2.5);
    }
  }

  return { resize, draw, burst, bump, flashScreen, toArena };
}
