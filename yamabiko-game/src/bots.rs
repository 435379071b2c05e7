//! Server-side bots, so one person can play alone: they run from "it", and chase when
//! they are "it" — with a reaction time and some wobble, so a person can get away.
//!
//! A bot produces one input per tick, like a page, and goes through the same `step`.

use crate::sim::{Command, Params, State, INPUT_MAX, MAX_PLAYERS};

/// Names bots take, in order of seats.
pub const BOT_NAMES: [&str; MAX_PLAYERS] = [
    "こだま",
    "そら",
    "うみ",
    "かぜ",
    "ゆき",
    "はな",
    "つき",
    "ほし",
    "もり",
    "かわ",
    "やま",
    "あめ",
    "にじ",
    "ひかり",
    "すず",
    "くも",
];

/// Ticks between a chasing bot's changes of direction, at least.
const CHASE_REACTION_MS: u32 = 180;
/// Within this many arena units of "it", a bot runs.
const DANGER_UNITS: i64 = 330;

/// One bot's mind.
#[derive(Clone, Debug)]
pub struct Bot {
    rng: u64,
    seq: u32,
    /// The stick held until the next decision.
    stick: (i8, i8),
    /// Ticks until the next decision.
    think_in: u32,
    /// Wandering direction, radians.
    heading: f64,
}

impl Bot {
    /// A bot seeded with `seed` (bots with different seeds behave differently).
    pub fn new(seed: u64) -> Bot {
        let mut bot = Bot {
            rng: seed | 1,
            seq: 0,
            stick: (0, 0),
            think_in: 0,
            heading: 0.0,
        };
        bot.heading = bot.unit() * std::f64::consts::TAU;
        bot
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The bot's input for the next tick.
    pub fn think(&mut self, slot: u8, state: &State, params: &Params) -> Command {
        self.seq = self.seq.wrapping_add(1);
        let stick = match state.players.get(usize::from(slot)).copied().flatten() {
            Some(me) => {
                if self.think_in == 0 {
                    let (stick, wait) = self.decide(slot, &me, state, params);
                    self.stick = stick;
                    self.think_in = wait;
                }
                self.think_in -= 1;
                self.stick
            }
            None => (0, 0),
        };
        Command {
            slot,
            seq: self.seq,
            dx: stick.0,
            dy: stick.1,
            view_tick: state.tick,
        }
    }

    /// A new stick and how many ticks to hold it.
    fn decide(
        &mut self,
        slot: u8,
        me: &crate::sim::Player,
        state: &State,
        params: &Params,
    ) -> ((i8, i8), u32) {
        let hz = params.tick_hz;
        let (mx, my) = (f64::from(me.x), f64::from(me.y));
        let sub = f64::from(crate::sim::SUBUNITS);
        if state.it == Some(slot) {
            // Chase the nearest, aiming a little ahead of where it runs.
            let target = state
                .players
                .iter()
                .enumerate()
                .filter(|(i, p)| *i != usize::from(slot) && matches!(p, Some(p) if !p.away))
                .filter_map(|(_, p)| *p)
                .min_by_key(|p| {
                    let (dx, dy) = (i64::from(p.x - me.x), i64::from(p.y - me.y));
                    dx * dx + dy * dy
                });
            let wait = (CHASE_REACTION_MS * hz / 1000).max(1) + (self.next() % 4) as u32;
            let Some(t) = target else {
                return ((0, 0), wait);
            };
            let dist = (f64::from(t.x) - mx).hypot(f64::from(t.y) - my);
            let lead = (dist / f64::from(params.it_speed.max(1))).min(12.0) * 0.6;
            let (ax, ay) = (
                f64::from(t.x) + f64::from(t.vx) * lead - mx,
                f64::from(t.y) + f64::from(t.vy) * lead - my,
            );
            let wobble = (self.unit() - 0.5) * 0.5;
            let angle = ay.atan2(ax) + wobble;
            // A touch slower than flat out: a quick person escapes in the open.
            return (stick(angle, 0.9), wait);
        }
        let threat = state
            .it
            .and_then(|it| state.players[usize::from(it)])
            .filter(|_| state.it != Some(slot));
        let (mut fx, mut fy) = (0.0f64, 0.0f64);
        let mut urgency = 0.0;
        if let Some(it) = threat {
            let (dx, dy) = (mx - f64::from(it.x), my - f64::from(it.y));
            let d = dx.hypot(dy).max(1.0);
            let danger = DANGER_UNITS as f64 * sub;
            if d < danger {
                urgency = 1.0 - d / danger;
                fx += dx / d * (0.6 + urgency);
                fy += dy / d * (0.6 + urgency);
            }
        }
        // Walls push inward, harder the closer they are.
        let margin = f64::from(params.radius) * 5.0;
        let w = f64::from(params.width);
        let h = f64::from(params.height);
        let push = |d: f64| if d < margin { 1.0 - d / margin } else { 0.0 };
        fx += push(mx) * 1.4 - push(w - mx) * 1.4;
        fy += push(my) * 1.4 - push(h - my) * 1.4;
        if urgency > 0.0 {
            let angle = fy.atan2(fx) + (self.unit() - 0.5) * 0.6;
            let wait = (hz / 8).max(1) + (self.next() % 3) as u32;
            return (stick(angle, 0.75 + 0.25 * urgency), wait);
        }
        // Wander: drift the heading, lean away from walls, amble.
        self.heading += (self.unit() - 0.5) * 1.2;
        let (hx, hy) = (self.heading.cos() + fx, self.heading.sin() + fy);
        self.heading = hy.atan2(hx);
        let speed = if self.unit() < 0.15 { 0.0 } else { 0.55 };
        let wait = hz / 3 + (self.next() % u64::from(hz.max(1))) as u32;
        (stick(self.heading, speed), wait.max(1))
    }
}

/// A stick deflection at `angle` (radians, y down) and `strength` (0–1).
fn stick(angle: f64, strength: f64) -> (i8, i8) {
    let m = f64::from(INPUT_MAX) * strength.clamp(0.0, 1.0);
    (
        (angle.cos() * m).round().clamp(-127.0, 127.0) as i8,
        (angle.sin() * m).round().clamp(-127.0, 127.0) as i8,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::step;

    /// Runs a room of bots for `ticks` and returns the final state.
    fn play(n: u8, ticks: u32) -> State {
        let params = Params::for_tick_hz(30).unwrap();
        let mut state = State::new();
        let mut bots: Vec<Bot> = (0..n).map(|i| Bot::new(u64::from(i) * 7919 + 1)).collect();
        for slot in 0..n {
            let (x, y) = state.spawn_point(&params, u64::from(slot) + 11);
            state.add(slot, x, y);
        }
        for _ in 0..ticks {
            let inputs: Vec<Command> = bots
                .iter_mut()
                .enumerate()
                .map(|(i, b)| b.think(i as u8, &state, &params))
                .collect();
            state = step(&params, state, &inputs);
        }
        state
    }

    #[test]
    fn bots_play_tag() {
        let params = Params::for_tick_hz(30).unwrap();
        let mut state = State::new();
        let n = 6u8;
        let mut bots: Vec<Bot> = (0..n).map(|i| Bot::new(u64::from(i) * 7919 + 1)).collect();
        for slot in 0..n {
            let (x, y) = state.spawn_point(&params, u64::from(slot) + 11);
            state.add(slot, x, y);
        }
        let mut tags = 0;
        let mut moved = [0i64; 6];
        for _ in 0..30 * 60 {
            let before = state.clone();
            let inputs: Vec<Command> = bots
                .iter_mut()
                .enumerate()
                .map(|(i, b)| b.think(i as u8, &state, &params))
                .collect();
            state = step(&params, state, &inputs);
            if matches!(state.last_tag, Some(t) if t.tagger.is_some()) {
                tags += 1;
            }
            for (i, m) in moved.iter_mut().enumerate() {
                let (a, b) = (before.players[i].unwrap(), state.players[i].unwrap());
                *m += i64::from((a.x - b.x).abs() + (a.y - b.y).abs());
            }
        }
        // A minute of bots: "it" changes hands now and then, but not every moment.
        assert!((2..=60).contains(&tags), "{tags} tags in a minute");
        assert!(
            moved.iter().all(|&m| m > 10_000),
            "everyone moves: {moved:?}"
        );
    }

    #[test]
    fn bots_are_deterministic_for_a_seed() {
        assert_eq!(play(5, 300), play(5, 300));
    }

    #[test]
    fn names_are_short_enough() {
        for name in BOT_NAMES {
            assert!(name.chars().count() <= crate::protocol::MAX_NAME_CHARS);
        }
    }
}
