//! Stop sequences matched across token boundaries: text is held back only while it could
//! still be the start of a stop string, and the stop string itself is never emitted.

/// Matches stop strings in a stream of text pieces.
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        StopMatcher {
            stops,
            held: String::new(),
        }
    }

    /// Adds `text`; returns what may be shown now and whether a stop string matched.
    /// With `last`, nothing more will come, so nothing is held back.
    pub fn push(&mut self, text: &str, last: bool) -> (String, bool) {
        if self.stops.is_empty() {
            return (text.to_owned(), false);
        }
        self.held.push_str(text);
        let first_match = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first_match {
            let visible = self.held[..at].to_owned();
            self.held.clear();
            return (visible, true);
        }
        if last {
            return (std::mem::take(&mut self.held), false);
        }
        // Hold back the longest tail that is a proper prefix of some stop string.
        let keep = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.held.len());
        let rest = self.held.split_off(keep);
        (std::mem::replace(&mut self.held, rest), false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_across_pieces_and_releases_false_starts() {
        let mut m = StopMatcher::new(vec!["END".into(), "\n\n".into()]);
        assert_eq!(m.push("hello E", false), ("hello ".into(), false));
        assert_eq!(m.push("N", false), ("".into(), false));
        assert_eq!(m.push("x", false), ("ENx".into(), false));
        assert_eq!(m.push("a\n", false), ("a".into(), false));
        assert_eq!(m.push("\nmore", false), ("".into(), true));
    }

    #[test]
    fn earliest_stop_wins_and_last_flushes() {
        let mut m = StopMatcher::new(vec!["b".into(), "a".into()]);
        assert_eq!(m.push("xxab", false), ("xx".into(), true));
        let mut m = StopMatcher::new(vec!["abc".into()]);
        assert_eq!(m.push("ab", true), ("ab".into(), false));
        let mut none = StopMatcher::new(vec![]);
        assert_eq!(none.push("é", false), ("é".into(), false));
    }
}
