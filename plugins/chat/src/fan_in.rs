//! Reading several generations at once (n choices, several prompts) through
//! [`Host::next_of`]: whichever has an event is served, so none sits paused with its cache
//! while another is read, and one the engine has not admitted yet holds up nobody. The list is
//! rotated after each event so that a host that always answers for the first it is given
//! (a fake) still serves each in turn.

use cinder_sdk::Error;
use cinder_sdk::host::{Generation, Host};
use cinder_sdk::inference::Event;

/// Who is asked first next time.
#[derive(Default)]
pub(crate) struct FanIn {
    cursor: usize,
}

impl FanIn {
    /// The position in `items` of the one whose generation had the next event, and that
    /// event. `items` must not be empty.
    pub(crate) fn next<T>(
        &mut self,
        host: &dyn Host,
        items: &[T],
        generation: impl Fn(&T) -> &dyn Generation,
    ) -> (usize, Result<Option<Event>, Error>) {
        let n = items.len().max(1);
        let order: Vec<usize> = (0..items.len()).map(|k| (self.cursor + k) % n).collect();
        let refs: Vec<&dyn Generation> = order.iter().map(|&i| generation(&items[i])).collect();
        let (k, event) = host.next_of(&refs);
        let i = order.get(k).copied().unwrap_or(0);
        self.cursor = i + 1;
        (i, event)
    }

    /// `items[i]` was removed: the one after it moved into its place.
    pub(crate) fn removed(&mut self, i: usize) {
        if self.cursor > i {
            self.cursor -= 1;
        }
    }
}
