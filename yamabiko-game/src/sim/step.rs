//! `step(state, inputs) -> state`: one tick of the game, a pure function on integers.
//!
//! The page runs the same arithmetic (`web/sim.js`) to predict its own circle; the two
//! are kept equal by shared test vectors ([`super::vectors`]). So every operation here
//! is one JavaScript reproduces exactly: sums and products of integers well below
//! 2^53, division truncated toward zero, and an integer square root.
//!
//! A tick, in order:
//! 1. **Movement.** Each player's inputs of this tick are applied in order, one
//!    movement step each ([`move_player`]); a player without input stands still.
//! 2. **Who is "it".** If "it" left or went away, the eligible player nearest to where
//!    it was (else the lowest seat) becomes "it", immune for a moment.
//! 3. **Tag.** Unless immune, "it" tags the nearest eligible player it touches, now or
//!    — lag compensation, in the tagger's favour — where that player was at the tick
//!    the tagger saw when it moved, at most [`Params::rewind_ticks`] back.
//! 4. **Collisions.** Overlapping circles are pushed apart (walls never give way).
//! 5. **Score.** Everyone eligible who is not "it" scores a tick.

use super::params::{Params, COLLISION_PASSES, INPUT_MAX, MAX_PLAYERS};
use super::state::{Command, Player, State, Tag};

/// Advances `state` by one tick with the inputs that arrived for it.
///
/// Inputs for empty or away seats are ignored; a seat's inputs apply in the order
/// given.
///
/// ```
/// use yamabiko_game::sim::{step, Command, Params, State};
/// let params = Params::for_tick_hz(30).unwrap();
/// let mut state = State::new();
/// state.add(0, 800, 800);
/// let right = Command { slot: 0, seq: 1, dx: 127, dy: 0, view_tick: 0 };
/// let next = step(&params, state, &[right]);
/// assert_eq!(next.tick, 1);
/// assert!(next.players[0].unwrap().x > 800);
/// assert_eq!(next.players[0].unwrap().ack, 1);
/// ```
pub fn step(params: &Params, mut state: State, inputs: &[Command]) -> State {
    let tick = state.tick.wrapping_add(1);
    state.tick = tick;
    state.last_tag = None;

    // 1. Movement.
    let mut view_tick: [Option<u32>; MAX_PLAYERS] = [None; MAX_PLAYERS];
    for cmd in inputs {
        let slot = usize::from(cmd.slot);
        let is_it = state.it == Some(cmd.slot);
        if let Some(Some(p)) = state.players.get_mut(slot) {
            if p.away {
                continue;
            }
            move_player(params, p, cmd.dx, cmd.dy, is_it);
            p.ack = cmd.seq;
            view_tick[slot] = Some(cmd.view_tick);
        }
    }

    // 2. Who is "it".
    choose_it(params, &mut state);

    // 3. Tag.
    if let Some(it) = state.it {
        if tick >= state.immune_until {
            if let Some(tagged) = touched_by(params, &state, usize::from(it), view_tick) {
                state.it = Some(tagged);
                state.immune_until = tick + params.immune_ticks;
                state.last_tag = Some(Tag {
                    tick,
                    tagger: Some(it),
                    tagged,
                });
            }
        }
    }

    // 4. Collisions.
    resolve_collisions(params, &mut state.players);

    // 5. Score.
    for (slot, p) in state.players.iter_mut().enumerate() {
        if let Some(p) = p {
            if !p.away && state.it != Some(slot as u8) {
                p.score = p.score.wrapping_add(1);
            }
        }
    }

    state.record_history(params.rewind_ticks as usize + 1);
    state
}

/// One movement step of one circle: the stick sets a target velocity, the velocity
/// moves toward it by at most `accel` per axis, the position by the velocity; walls
/// stop the circle. This is the whole of the page's prediction.
pub fn move_player(params: &Params, p: &mut Player, dx: i8, dy: i8, is_it: bool) {
    let (tx, ty) = target_velocity(params, dx, dy, is_it);
    p.vx += (tx - p.vx).clamp(-params.accel, params.accel);
    p.vy += (ty - p.vy).clamp(-params.accel, params.accel);
    p.x += p.vx;
    p.y += p.vy;
    let r = params.radius;
    if p.x < r {
        p.x = r;
        p.vx = p.vx.max(0);
    } else if p.x > params.width - r {
        p.x = params.width - r;
        p.vx = p.vx.min(0);
    }
    if p.y < r {
        p.y = r;
        p.vy = p.vy.max(0);
    } else if p.y > params.height - r {
        p.y = params.height - r;
        p.vy = p.vy.min(0);
    }
}

/// The velocity a stick position asks for: the stick is clamped to the unit circle
/// (a diagonal of two keys is as fast as one key), then scaled to the top speed.
fn target_velocity(params: &Params, dx: i8, dy: i8, is_it: bool) -> (i32, i32) {
    let max = i64::from(INPUT_MAX);
    let mut dx = i64::from(dx).max(-max);
    let mut dy = i64::from(dy).max(-max);
    let len2 = dx * dx + dy * dy;
    if len2 > max * max {
        let len = isqrt(len2);
        dx = dx * max / len;
        dy = dy * max / len;
    }
    let speed = i64::from(params.speed(is_it));
    ((dx * speed / max) as i32, (dy * speed / max) as i32)
}

/// Hands "it" on when nobody eligible holds it.
fn choose_it(params: &Params, state: &mut State) {
    let eligible = |p: &Option<Player>| matches!(p, Some(p) if !p.away);
    if let Some(it) = state.it {
        if eligible(&state.players[usize::from(it)]) {
            return;
        }
    }
    let from = state.it.and_then(|it| state.players[usize::from(it)]);
    let mut best: Option<(i64, u8)> = None;
    for (slot, p) in state.players.iter().enumerate() {
        let Some(p) = p else { continue };
        if p.away {
            continue;
        }
        let key = match from {
            Some(f) => dist2((f.x, f.y), (p.x, p.y)),
            None => slot as i64,
        };
        if best.is_none_or(|(k, _)| key < k) {
            best = Some((key, slot as u8));
        }
    }
    state.it = best.map(|(_, slot)| slot);
    if let Some(tagged) = state.it {
        state.immune_until = state.tick + params.immune_ticks;
        state.last_tag = Some(Tag {
            tick: state.tick,
            tagger: None,
            tagged,
        });
    }
}

/// The eligible player "it" touches (the nearest, lowest seat on a tie), judged at
/// the current positions or at the rewound ones, whichever is closer.
fn touched_by(
    params: &Params,
    state: &State,
    it: usize,
    view_tick: [Option<u32>; MAX_PLAYERS],
) -> Option<u8> {
    let me = state.players[it]?;
    let reach = i64::from(2 * params.radius + params.touch);
    let reach2 = reach * reach;
    // The tick "it" saw the others at, no more than rewind_ticks back.
    let seen = view_tick[it]
        .map(|v| v.max(state.tick.saturating_sub(params.rewind_ticks)))
        .filter(|&v| v < state.tick);
    let mut best: Option<(i64, u8)> = None;
    for (slot, p) in state.players.iter().enumerate() {
        let Some(p) = p else { continue };
        if slot == it || p.away {
            continue;
        }
        let mut d2 = dist2((me.x, me.y), (p.x, p.y));
        if let Some(then) = seen.and_then(|v| state.position_at(v, slot)) {
            d2 = d2.min(dist2((me.x, me.y), then));
        }
        if d2 <= reach2 && best.is_none_or(|(k, _)| d2 < k) {
            best = Some((d2, slot as u8));
        }
    }
    best.map(|(_, slot)| slot)
}

/// Pushes overlapping circles apart, both by half the overlap (plus a sub-unit so
/// rounding cannot leave them touching); a circle stopped by a wall leaves the rest of
/// the push to the other. Passes repeat until nothing overlaps (a crowd of 16 pushed
/// into a corner settles within [`COLLISION_PASSES`]).
fn resolve_collisions(params: &Params, players: &mut [Option<Player>; MAX_PLAYERS]) {
    let min = i64::from(2 * params.radius);
    for _ in 0..COLLISION_PASSES {
        let mut pushed = false;
        for i in 0..MAX_PLAYERS {
            for j in i + 1..MAX_PLAYERS {
                let (Some(a), Some(b)) = (players[i], players[j]) else {
                    continue;
                };
                let (dx, dy) = (i64::from(b.x - a.x), i64::from(b.y - a.y));
                let d2 = dx * dx + dy * dy;
                if d2 >= min * min {
                    continue;
                }
                pushed = true;
                let (nx, ny, dist) = if d2 == 0 {
                    (1, 0, 1)
                } else {
                    (dx, dy, isqrt(d2))
                };
                let push = (min - dist) / 2 + 1;
                let mx = div_away_from_zero(nx * push, dist);
                let my = div_away_from_zero(ny * push, dist);
                let (ax, bx) = separate(a.x, b.x, mx, params.radius, params.width);
                let (ay, by) = separate(a.y, b.y, my, params.radius, params.height);
                if let Some(a) = players[i].as_mut() {
                    a.x = ax;
                    a.y = ay;
                }
                if let Some(b) = players[j].as_mut() {
                    b.x = bx;
                    b.y = by;
                }
            }
        }
        if !pushed {
            break;
        }
    }
}

/// Moves `a` by `-m` and `b` by `+m` on one axis within `[r, size - r]`; what a wall
/// takes from one is given to the other.
fn separate(a: i32, b: i32, m: i64, r: i32, size: i32) -> (i32, i32) {
    let (lo, hi) = (i64::from(r), i64::from(size - r));
    let (a, b) = (i64::from(a), i64::from(b));
    let want_a = a - m;
    let mut new_a = want_a.clamp(lo, hi);
    let want_b = b + m + (new_a - want_a);
    let new_b = want_b.clamp(lo, hi);
    new_a = (new_a + (new_b - want_b)).clamp(lo, hi);
    (new_a as i32, new_b as i32)
}

/// `a / b` rounded away from zero, for `b > 0`.
fn div_away_from_zero(a: i64, b: i64) -> i64 {
    if a >= 0 {
        (a + b - 1) / b
    } else {
        -((-a + b - 1) / b)
    }
}

fn dist2(a: (i32, i32), b: (i32, i32)) -> i64 {
    let (dx, dy) = (i64::from(a.0 - b.0), i64::from(a.1 - b.1));
    dx * dx + dy * dy
}

/// The integer square root: the largest `r` with `r * r <= n` (`n >= 0`). The float
/// estimate is corrected to the exact answer, as the page does.
pub fn isqrt(n: i64) -> i64 {
    if n <= 0 {
        return 0;
    }
    let mut r = (n as f64).sqrt() as i64;
    while r * r > n {
        r -= 1;
    }
    while (r + 1) * (r + 1) <= n {
        r += 1;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::super::params::SUBUNITS;
    use super::*;
    use proptest::prelude::*;

    fn params() -> Params {
        Params::for_tick_hz(30).unwrap()
    }

    fn cmd(slot: u8, seq: u32, dx: i8, dy: i8, view_tick: u32) -> Command {
        Command {
            slot,
            seq,
            dx,
            dy,
            view_tick,
        }
    }

    fn overlaps(params: &Params, s: &State) -> Vec<(usize, usize, i64)> {
        let min = i64::from(2 * params.radius);
        let mut out = vec![];
        for i in 0..MAX_PLAYERS {
            for j in i + 1..MAX_PLAYERS {
                if let (Some(a), Some(b)) = (s.players[i], s.players[j]) {
                    let d2 = dist2((a.x, a.y), (b.x, b.y));
                    if d2 < min * min {
                        out.push((i, j, min - isqrt(d2)));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn isqrt_is_exact() {
        for n in 0..100_000i64 {
            let r = isqrt(n);
            assert!(r * r <= n && (r + 1) * (r + 1) > n, "{n}");
        }
        for n in [i64::from(i32::MAX), (1 << 52) - 1, 1 << 52] {
            let r = isqrt(n);
            assert!(r * r <= n && (r + 1) * (r + 1) > n, "{n}");
        }
    }

    #[test]
    fn a_held_key_accelerates_to_top_speed_and_walls_stop() {
        let p = params();
        let mut me = Player {
            x: 1000,
            y: 1000,
            ..Player::default()
        };
        for _ in 0..10 {
            move_player(&p, &mut me, 127, 0, false);
        }
        assert_eq!(me.vx, p.max_speed);
        // Diagonal keys are no faster than one key.
        let (tx, ty) = target_velocity(&p, 127, 127, false);
        assert!(tx * tx + ty * ty <= p.max_speed * p.max_speed);
        assert_eq!(target_velocity(&p, -128, 0, false).0, -p.max_speed);
        for _ in 0..400 {
            move_player(&p, &mut me, 127, 0, false);
        }
        assert_eq!(me.x, p.width - p.radius);
        assert_eq!(me.vx, 0);
        // Releasing the key stops the circle.
        let mut run = Player {
            x: 1000,
            y: 1000,
            vx: p.max_speed,
            ..Player::default()
        };
        for _ in 0..10 {
            move_player(&p, &mut run, 0, 0, false);
        }
        assert_eq!((run.vx, run.vy), (0, 0));
    }

    #[test]
    fn it_is_faster() {
        let p = params();
        assert_eq!(target_velocity(&p, 127, 0, true).0, p.it_speed);
    }

    #[test]
    fn one_player_becomes_it_and_does_not_score() {
        let p = params();
        let mut s = State::new();
        s.add(3, 2000, 2000);
        s.add(5, 6000, 4000);
        let s = step(&p, s, &[]);
        assert_eq!(s.it, Some(3));
        assert_eq!(
            s.last_tag,
            Some(Tag {
                tick: 1,
                tagger: None,
                tagged: 3
            })
        );
        assert_eq!(s.immune_until, 1 + p.immune_ticks);
        assert_eq!(s.players[3].unwrap().score, 0);
        assert_eq!(s.players[5].unwrap().score, 1);
    }

    /// Two players side by side, 0 is "it" and past its immunity.
    fn chase(gap_units: i32) -> State {
        let p = params();
        let mut s = State::new();
        let gap = 2 * p.radius + gap_units * SUBUNITS;
        s.add(0, 2000, 2000);
        s.add(1, 2000 + gap, 2000);
        s = step(&p, s, &[]);
        assert_eq!(s.it, Some(0));
        // Up to the last immune tick: the next step may tag.
        while s.tick + 1 < s.immune_until {
            s = step(&p, s, &[]);
        }
        s
    }

    #[test]
    fn touching_tags_and_the_new_it_is_immune() {
        let p = params();
        let s = chase(3);
        let before = s.players[1].unwrap().score;
        let s = step(&p, s, &[]);
        assert_eq!(s.it, Some(1), "within reach without moving");
        assert_eq!(
            s.last_tag,
            Some(Tag {
                tick: s.tick,
                tagger: Some(0),
                tagged: 1
            })
        );
        // The new "it" stopped scoring this tick; the old one scores again.
        assert_eq!(s.players[1].unwrap().score, before);
        // No tag-back while immune, though they still touch.
        let mut s = s;
        for _ in 0..p.immune_ticks - 1 {
            s = step(&p, s, &[]);
            assert_eq!(s.it, Some(1));
            assert_eq!(s.last_tag, None);
        }
        let s = step(&p, s, &[]);
        assert_eq!(s.it, Some(0), "tag-back once immunity ends");
    }

    #[test]
    fn out_of_reach_is_not_tagged() {
        let p = params();
        let s = chase(5);
        let s = step(&p, s, &[]);
        assert_eq!(s.it, Some(0));
    }

    /// "It" (seat 0) stands still and immune; the runner (seat 1) starts touching it and
    /// runs off. Only after tick 1 was the runner within reach.
    fn runner() -> State {
        let p = params();
        let mut s = State::new();
        s.add(0, 2000, 2000);
        s.add(1, 2000 + 2 * p.radius, 2000);
        s.it = Some(0);
        s.immune_until = 1000;
        s
    }

    fn in_reach(p: &Params, s: &State) -> bool {
        let (a, b) = (s.players[0].unwrap(), s.players[1].unwrap());
        let reach = i64::from(2 * p.radius + p.touch);
        dist2((a.x, a.y), (b.x, b.y)) <= reach * reach
    }

    #[test]
    fn lag_compensation_tags_what_it_saw_at_most_rewind_ticks_back() {
        let p = params();
        assert_eq!(p.rewind_ticks, 3);
        let mut s = runner();
        let mut reach_at = vec![];
        for seq in 1..=4 {
            s = step(&p, s, &[cmd(1, seq, 127, 0, 0)]);
            if in_reach(&p, &s) {
                reach_at.push(s.tick);
            }
            if s.tick == 3 {
                // Tick 4 is next: tick 1 is 3 back, within the rewind.
                let mut t = s.clone();
                t.immune_until = 0;
                let seen_then = step(&p, t.clone(), &[cmd(0, 1, 0, 0, 1)]);
                assert_eq!(seen_then.it, Some(1), "tagged where it was seen");
                assert_eq!(seen_then.last_tag.unwrap().tagger, Some(0));
                let seen_now = step(&p, t, &[cmd(0, 1, 0, 0, 3)]);
                assert_eq!(seen_now.it, Some(0), "no rewind, no tag");
            }
        }
        assert_eq!(reach_at, vec![1]);
        // Tick 5 is next: tick 1 is 4 back, beyond the rewind (clamped to tick 2).
        s.immune_until = 0;
        let too_old = step(&p, s, &[cmd(0, 1, 0, 0, 1)]);
        assert_eq!(too_old.it, Some(0), "rewind is bounded");
    }

    #[test]
    fn away_players_are_not_it_not_tagged_and_do_not_score() {
        let p = params();
        let mut s = chase(0);
        s.set_away(1, true);
        let score = s.players[1].unwrap().score;
        let s2 = step(&p, s.clone(), &[cmd(1, 9, 127, 0, 0)]);
        assert_eq!(s2.it, Some(0));
        assert_eq!(s2.players[1].unwrap().score, score);
        assert_eq!(
            s2.players[1].unwrap().ack,
            0,
            "an away player's input is ignored"
        );
        // "It" goes away: handed to the one left.
        let mut s3 = s.clone();
        s3.set_away(1, false);
        s3.set_away(0, true);
        let s3 = step(&p, s3, &[]);
        assert_eq!(s3.it, Some(1));
        assert_eq!(s3.last_tag.unwrap().tagger, None);
        // Everyone away: nobody is "it".
        let mut s4 = s;
        s4.set_away(0, true);
        let s4 = step(&p, s4, &[]);
        assert_eq!(s4.it, None);
    }

    #[test]
    fn coincident_circles_separate() {
        let p = params();
        let mut s = State::new();
        s.add(0, p.radius, p.radius);
        s.add(1, p.radius, p.radius);
        s.add(2, p.radius, p.radius);
        let s = step(&p, s, &[]);
        assert_eq!(overlaps(&p, &s), vec![]);
    }

    #[test]
    fn a_crowd_pushed_into_a_corner_does_not_overlap() {
        let p = params();
        let mut s = State::new();
        let mut rng = 12345u32;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            rng
        };
        for slot in 0..16u8 {
            let x = p.radius + (next() % (6 * p.radius as u32)) as i32;
            let y = p.radius + (next() % (6 * p.radius as u32)) as i32;
            s.add(slot, x, y);
        }
        for t in 0..300u32 {
            let inputs: Vec<Command> = (0..16u8)
                .map(|slot| cmd(slot, t + 1, -127, -127, 0))
                .collect();
            s = step(&p, s, &inputs);
            assert_eq!(overlaps(&p, &s), vec![], "tick {}", s.tick);
        }
    }

    fn arb_state() -> impl Strategy<Value = State> {
        let p = params();
        let seat = (
            any::<bool>(),
            p.radius..=p.width - p.radius,
            p.radius..=p.height - p.radius,
            -p.it_speed..=p.it_speed,
            -p.it_speed..=p.it_speed,
            any::<bool>(),
            0u32..10_000,
        );
        (
            proptest::collection::vec(seat, MAX_PLAYERS),
            proptest::option::of(0u8..16),
            0u32..100,
            any::<bool>(),
        )
            .prop_map(move |(seats, it, immune, crowded)| {
                let mut s = State::new();
                s.tick = 50;
                for (i, (taken, x, y, vx, vy, away, score)) in seats.into_iter().enumerate() {
                    // Crowded: everyone within a box of 8 radii in the top-left corner.
                    let (x, y) = if crowded {
                        (p.radius + x % (8 * p.radius), p.radius + y % (8 * p.radius))
                    } else {
                        (x, y)
                    };
                    if taken {
                        s.players[i] = Some(Player {
                            x,
                            y,
                            vx,
                            vy,
                            score,
                            ack: 0,
                            away: away && i % 3 == 0,
                        });
                    }
                }
                s.it = it;
                s.immune_until = immune;
                // Start from a settled state, as every real state is.
                step(&p, s, &[])
            })
    }

    fn arb_inputs() -> impl Strategy<Value = Vec<Command>> {
        proptest::collection::vec(
            (0u8..16, any::<i8>(), any::<i8>(), 0u32..60).prop_map(|(slot, dx, dy, view)| {
                Command {
                    slot,
                    seq: 1,
                    dx,
                    dy,
                    view_tick: view,
                }
            }),
            0..40,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn invariants_hold(state in arb_state(), inputs in arb_inputs()) {
            let p = params();
            let before = state.clone();
            let after = step(&p, state.clone(), &inputs);
            // Deterministic.
            prop_assert_eq!(&after, &step(&p, state, &inputs));
            prop_assert_eq!(after.tick, before.tick + 1);
            // No overlap after collisions.
            prop_assert_eq!(overlaps(&p, &after), vec![]);
            // Inside the walls.
            for q in after.players.iter().flatten() {
                prop_assert!(q.x >= p.radius && q.x <= p.width - p.radius);
                prop_assert!(q.y >= p.radius && q.y <= p.height - p.radius);
                prop_assert!(q.vx.abs() <= 127 && q.vy.abs() <= 127);
            }
            // Exactly one "it" while anyone is eligible, and it is eligible.
            let eligible: Vec<u8> = (0..16u8)
                .filter(|&i| matches!(after.players[usize::from(i)], Some(q) if !q.away))
                .collect();
            match after.it {
                Some(it) => prop_assert!(eligible.contains(&it)),
                None => prop_assert!(eligible.is_empty()),
            }
            // A tag only when not immune; a change of "it" is always reported.
            if before.it != after.it {
                let tag = after.last_tag.expect("a change of it is reported");
                prop_assert_eq!(Some(tag.tagged), after.it);
                if tag.tagger.is_some() {
                    prop_assert!(before.immune_until <= after.tick);
                    prop_assert_eq!(after.immune_until, after.tick + p.immune_ticks);
                }
            }
            // Scoring: one tick for every eligible player who is not "it".
            for i in 0..MAX_PLAYERS {
                if let (Some(b), Some(a)) = (before.players[i], after.players[i]) {
                    let gain = a.score - b.score;
                    let expect = u32::from(!a.away && after.it != Some(i as u8));
                    prop_assert_eq!(gain, expect, "seat {}", i);
                }
            }
        }
    }
}
