//! The decision for one batch, made under the product's row lock: pure, so
//! that every case is a unit test.

use std::collections::{HashMap, HashSet};

use super::Outcome;
use crate::{domain::OrderId, idempotency};

/// What the reserver needs to know of a request to decide it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ask<'a> {
    pub(super) phone: &'a str,
    pub(super) key: Option<&'a str>,
    pub(super) fingerprint: &'a [u8],
}

/// A request's state while its batch is being decided.
#[derive(Debug, Clone)]
enum Slot {
    Done(Outcome),
    /// Same Idempotency-Key and body as request `j`, earlier in this batch:
    /// gets `j`'s final outcome, as a replay.
    ReplayOf(usize),
    /// Holds one of the units, but its row is not inserted yet.
    Unit(OrderId),
    /// No unit was left for it; a unit freed by a conflict may still reach it.
    Waiting,
}

/// The decisions for one batch, made under the product's row lock.
///
/// Phones are not looked up beforehand: the insert itself is the check
/// (`ON CONFLICT (sku, phone) DO NOTHING`), so a phone that already holds a
/// reservation is found by the unique index in O(log n), whatever the
/// planner's statistics say. A conflicting request becomes
/// `already_reserved` and its unit goes to the next waiting request, in
/// arrival order, in another insert round (rare: only duplicates conflict).
#[derive(Debug)]
pub(super) struct Plan<'a> {
    asks: Vec<Ask<'a>>,
    slots: Vec<Slot>,
    pub(super) remaining: i32,
    /// Phones that hold a reservation: in the database (learnt from a
    /// conflict) or in this batch.
    taken: HashSet<&'a str>,
    /// Requests whose key and outcome are to be stored: the first request
    /// with each key not already in the store.
    pub(super) to_store: Vec<usize>,
}

impl<'a> Plan<'a> {
    /// Decides what can be decided before touching `orders`: replays of
    /// stored keys, repeats within the batch, and which requests get the
    /// `remaining` units.
    pub(super) fn new(
        asks: Vec<Ask<'a>>,
        stored: &HashMap<String, idempotency::Stored>,
        remaining: i32,
    ) -> Self {
        let mut plan = Plan {
            slots: Vec::with_capacity(asks.len()),
            asks,
            remaining,
            taken: HashSet::new(),
            to_store: Vec::new(),
        };
        let mut keyed_here: HashMap<&str, usize> = HashMap::new();
        for i in 0..plan.asks.len() {
            let ask = plan.asks[i];
            if let Some(key) = ask.key {
                if let Some(stored) = stored.get(key) {
                    plan.slots
                        .push(Slot::Done(idempotency::replay(stored, ask.fingerprint)));
                    continue;
                }
                if let Some(&j) = keyed_here.get(key) {
                    plan.slots
                        .push(if plan.asks[j].fingerprint == ask.fingerprint {
                            Slot::ReplayOf(j)
                        } else {
                            Slot::Done(Outcome::IdempotencyMismatch)
                        });
                    continue;
                }
                keyed_here.insert(key, i);
                plan.to_store.push(i);
            }
            let slot = plan.claim(ask.phone);
            plan.slots.push(slot);
        }
        plan
    }

    fn claim(&mut self, phone: &'a str) -> Slot {
        if self.taken.contains(phone) {
            Slot::Done(Outcome::AlreadyReserved)
        } else if self.remaining > 0 {
            self.remaining -= 1;
            self.taken.insert(phone);
            Slot::Unit(OrderId::generate())
        } else {
            Slot::Waiting
        }
    }

    /// The requests holding a unit whose order row is still to be inserted.
    pub(super) fn pending(&self) -> Vec<(usize, &OrderId)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| match slot {
                Slot::Unit(id) => Some((i, id)),
                _ => None,
            })
            .collect()
    }

    /// Records which of the pending orders the database inserted. Returns
    /// true if another round is needed: some phones conflicted and their
    /// units went to waiting requests.
    pub(super) fn inserted(&mut self, ids: &HashSet<String>) -> bool {
        let mut freed = 0;
        for slot in &mut self.slots {
            if let Slot::Unit(id) = slot {
                *slot = Slot::Done(if ids.contains(id.as_str()) {
                    Outcome::Reserved {
                        order_id: id.clone(),
                        replayed: false,
                    }
                } else {
                    // The phone already holds a reservation (it stays in
                    // `taken`), and the unit is free again.
                    freed += 1;
                    Outcome::AlreadyReserved
                });
            }
        }
        if freed == 0 {
            return false;
        }
        self.remaining += freed;
        for i in 0..self.slots.len() {
            if matches!(self.slots[i], Slot::Waiting) {
                // A waiting repeat of a phone reserved in this round becomes
                // already_reserved; others stay waiting once units run out.
                self.slots[i] = self.claim(self.asks[i].phone);
            }
        }
        self.slots.iter().any(|s| matches!(s, Slot::Unit(_)))
    }

    /// The final outcomes, in request order.
    pub(super) fn finish(self) -> Vec<Outcome> {
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(self.slots.len());
        for slot in self.slots {
            let outcome = match slot {
                Slot::Done(outcome) => outcome,
                // `j` is earlier and never itself a ReplayOf.
                Slot::ReplayOf(j) => match &outcomes[j] {
                    Outcome::Reserved { order_id, .. } => Outcome::Reserved {
                        order_id: order_id.clone(),
                        replayed: true,
                    },
                    other => other.clone(),
                },
                Slot::Waiting => Outcome::SoldOut,
                // Unreachable after the insert rounds; never report a unit
                // that was not inserted as reserved.
                Slot::Unit(_) => Outcome::Failed,
            };
            outcomes.push(outcome);
        }
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask<'a>(phone: &'a str, key: Option<&'a str>, fingerprint: &'a [u8]) -> Ask<'a> {
        Ask {
            phone,
            key,
            fingerprint,
        }
    }

    /// What the database would insert: every pending order whose phone is
    /// not in `held`.
    fn insert(plan: &mut Plan<'_>, held: &HashSet<&str>) -> bool {
        let ids = plan
            .pending()
            .into_iter()
            .filter(|(i, _)| !held.contains(plan.asks[*i].phone))
            .map(|(_, id)| id.as_str().to_owned())
            .collect();
        plan.inserted(&ids)
    }

    fn labels(outcomes: &[Outcome]) -> Vec<&'static str> {
        outcomes.iter().map(Outcome::label).collect()
    }

    #[test]
    fn units_go_in_arrival_order_then_sold_out() {
        let asks = vec![
            ask("+1", None, b"a"),
            ask("+2", None, b"b"),
            ask("+3", None, b"c"),
        ];
        let mut plan = Plan::new(asks, &HashMap::new(), 2);
        assert_eq!(plan.pending().len(), 2);
        assert!(!insert(&mut plan, &HashSet::new()));
        assert_eq!(plan.remaining, 0);
        assert_eq!(labels(&plan.finish()), ["reserved", "reserved", "sold_out"]);
    }

    #[test]
    fn a_phone_twice_in_one_batch_is_reserved_once() {
        let asks = vec![
            ask("+1", None, b"a"),
            ask("+1", None, b"a"),
            ask("+2", None, b"b"),
        ];
        let mut plan = Plan::new(asks, &HashMap::new(), 5);
        assert!(!insert(&mut plan, &HashSet::new()));
        assert_eq!(plan.remaining, 3);
        assert_eq!(
            labels(&plan.finish()),
            ["reserved", "already_reserved", "reserved"]
        );
    }

    #[test]
    fn a_conflict_frees_its_unit_for_the_next_waiting_request() {
        // One unit left; the first request's phone already holds an order.
        let asks = vec![
            ask("+1", None, b"a"),
            ask("+2", None, b"b"),
            ask("+3", None, b"c"),
        ];
        let held = HashSet::from(["+1"]);
        let mut plan = Plan::new(asks, &HashMap::new(), 1);
        assert!(insert(&mut plan, &held), "a second round is needed");
        assert!(!insert(&mut plan, &held));
        assert_eq!(plan.remaining, 0);
        assert_eq!(
            labels(&plan.finish()),
            ["already_reserved", "reserved", "sold_out"]
        );
    }

    #[test]
    fn a_freed_unit_skips_a_waiting_repeat_of_a_phone_now_reserved() {
        // +1 conflicts; its unit goes to +2; the later +2 repeat is
        // already_reserved, not sold_out and not a second order.
        let asks = vec![
            ask("+1", None, b"a"),
            ask("+2", None, b"b"),
            ask("+2", None, b"b"),
        ];
        let held = HashSet::from(["+1"]);
        let mut plan = Plan::new(asks, &HashMap::new(), 1);
        while insert(&mut plan, &held) {}
        assert_eq!(
            labels(&plan.finish()),
            ["already_reserved", "reserved", "already_reserved"]
        );
    }

    #[test]
    fn every_conflict_in_a_row_ends_with_units_returned() {
        let asks = vec![ask("+1", None, b"a"), ask("+2", None, b"b")];
        let held = HashSet::from(["+1", "+2"]);
        let mut plan = Plan::new(asks, &HashMap::new(), 5);
        while insert(&mut plan, &held) {}
        assert_eq!(plan.remaining, 5);
        assert_eq!(
            labels(&plan.finish()),
            ["already_reserved", "already_reserved"]
        );
    }

    #[test]
    fn stored_keys_replay_or_mismatch_without_taking_units() {
        let order_id = OrderId::generate();
        let stored = HashMap::from([(
            "k1".to_owned(),
            (
                b"same".to_vec(),
                Outcome::Reserved {
                    order_id: order_id.clone(),
                    replayed: true,
                },
            ),
        )]);
        let asks = vec![
            ask("+1", Some("k1"), b"same"),
            ask("+1", Some("k1"), b"other"),
        ];
        let mut plan = Plan::new(asks, &stored, 3);
        assert!(plan.pending().is_empty());
        assert!(plan.to_store.is_empty(), "stored keys are not stored again");
        assert!(!insert(&mut plan, &HashSet::new()));
        let outcomes = plan.finish();
        assert_eq!(
            outcomes[0],
            Outcome::Reserved {
                order_id,
                replayed: true
            }
        );
        assert_eq!(outcomes[1], Outcome::IdempotencyMismatch);
    }

    #[test]
    fn a_key_repeated_in_the_batch_replays_the_final_outcome() {
        // The first keyed request conflicts (already reserved): its repeat
        // must replay that, not the unit it held before the insert.
        let asks = vec![
            ask("+1", Some("k"), b"x"),
            ask("+1", Some("k"), b"x"),
            ask("+2", Some("k2"), b"y"),
            ask("+2", Some("k2"), b"y"),
            ask("+3", Some("k2"), b"z"),
        ];
        let held = HashSet::from(["+1"]);
        let mut plan = Plan::new(asks, &HashMap::new(), 1);
        while insert(&mut plan, &held) {}
        assert_eq!(plan.to_store, [0, 2]);
        let outcomes = plan.finish();
        assert_eq!(
            labels(&outcomes),
            [
                "already_reserved",
                "already_reserved",
                "reserved",
                "replayed",
                "idempotency_mismatch"
            ]
        );
        let (Outcome::Reserved { order_id: a, .. }, Outcome::Reserved { order_id: b, .. }) =
            (&outcomes[2], &outcomes[3])
        else {
            unreachable!()
        };
        assert_eq!(a, b, "the replay carries the same order id");
    }

    #[test]
    fn nothing_left_means_sold_out_for_all_but_replays() {
        let asks = vec![ask("+1", None, b"a"), ask("+2", Some("k"), b"b")];
        let plan = Plan::new(asks, &HashMap::new(), 0);
        assert!(plan.pending().is_empty());
        assert_eq!(labels(&plan.finish()), ["sold_out", "sold_out"]);
    }
}
