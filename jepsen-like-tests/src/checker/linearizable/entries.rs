//! The doubly linked list of call and return entries the search walks.
//!
//! Every checked operation has a call entry at its invocation and a return entry at its
//! completion (or later, see [`super::problem`]), ordered by position. Linearizing an
//! operation *lifts* both of its entries out of the list in constant time; backtracking
//! *unlifts* them back where they were, which works because lifts are undone in reverse
//! order.

/// The list's head sentinel; the walk starts at `next[HEAD]`.
pub(super) const HEAD: usize = 0;

/// The list. Entry 0 is the head, entry `len - 1` the tail; entries in between are ordered
/// by position.
pub(super) struct Entries {
    /// The following entry (the tail points to itself).
    pub(super) next: Vec<usize>,
    /// The preceding entry.
    prev: Vec<usize>,
    /// The operation (index into the checked operations) of each entry.
    pub(super) op: Vec<usize>,
    /// Whether each entry is a call (else a return).
    pub(super) is_call: Vec<bool>,
    /// The call entry's return entry and back.
    pub(super) partner: Vec<usize>,
}

impl Entries {
    /// `keys[i]` = (call position, return position) of checked operation i.
    pub(super) fn new(keys: &[(u128, u128)]) -> Self {
        let mut order: Vec<(u128, bool, usize)> = Vec::with_capacity(keys.len() * 2);
        for (i, &(call, ret)) in keys.iter().enumerate() {
            order.push((call, true, i));
            order.push((ret, false, i));
        }
        // Returns at the same position (only at infinity) keep operation order; a call and
        // a return never share a position.
        order.sort_by_key(|&(pos, is_call, i)| (pos, !is_call, i));
        let len = order.len() + 2;
        let tail = len - 1;
        let mut e = Entries {
            next: (1..=len).collect(),
            prev: (0..len).map(|i| i.saturating_sub(1)).collect(),
            op: vec![usize::MAX; len],
            is_call: vec![false; len],
            partner: vec![0; len],
        };
        e.next[tail] = tail;
        let mut call_entry = vec![0; keys.len()];
        for (k, &(_, is_call, i)) in order.iter().enumerate() {
            let id = k + 1;
            e.op[id] = i;
            e.is_call[id] = is_call;
            if is_call {
                call_entry[i] = id;
            } else {
                e.partner[id] = call_entry[i];
                e.partner[call_entry[i]] = id;
            }
        }
        e
    }

    /// The tail sentinel.
    pub(super) fn tail(&self) -> usize {
        self.next.len() - 1
    }

    /// Takes the call entry `call` and its return entry out of the list.
    pub(super) fn lift(&mut self, call: usize) {
        let ret = self.partner[call];
        let (p, n) = (self.prev[call], self.next[call]);
        self.next[p] = n;
        self.prev[n] = p;
        let (p, n) = (self.prev[ret], self.next[ret]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    /// Puts back the entries the last [`Entries::lift`] of `call` took out.
    pub(super) fn unlift(&mut self, call: usize) {
        let ret = self.partner[call];
        let (p, n) = (self.prev[ret], self.next[ret]);
        self.next[p] = ret;
        self.prev[n] = ret;
        let (p, n) = (self.prev[call], self.next[call]);
        self.next[p] = call;
        self.prev[n] = call;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The operations and kinds of the entries, walking from the head.
    fn walk(e: &Entries) -> Vec<(usize, bool)> {
        let mut out = Vec::new();
        let mut at = e.next[HEAD];
        while at != e.tail() {
            out.push((e.op[at], e.is_call[at]));
            at = e.next[at];
        }
        out
    }

    #[test]
    fn entries_follow_positions_and_lifts_undo_in_reverse() {
        // Op 0 [0..6], op 1 [2..4], op 2 [8..inf], op 3 [10..inf].
        let mut e = Entries::new(&[(0, 6), (2, 4), (8, u128::MAX), (10, u128::MAX)]);
        let all = vec![
            (0, true),
            (1, true),
            (1, false),
            (0, false),
            (2, true),
            (3, true),
            (2, false),
            (3, false),
        ];
        assert_eq!(walk(&e), all);
        let call = |e: &Entries, op| (1..e.tail()).find(|&i| e.is_call[i] && e.op[i] == op);
        let (c1, c2) = (call(&e, 1).unwrap(), call(&e, 2).unwrap());
        assert_eq!(e.op[e.partner[c1]], 1);
        assert!(!e.is_call[e.partner[c1]]);
        e.lift(c1);
        e.lift(c2);
        assert_eq!(walk(&e), vec![(0, true), (0, false), (3, true), (3, false)]);
        e.unlift(c2);
        e.unlift(c1);
        assert_eq!(walk(&e), all);
    }
}
