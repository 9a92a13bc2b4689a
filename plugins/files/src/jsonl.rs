//! Checks a JSONL file as it streams past, chunk by chunk, without holding more than one line:
//! every non-empty line must be one JSON object. Batch and fine-tune files are refused at upload
//! when a line is not, with a 400 naming the line, instead of failing hours later.

/// The longest line kept while looking for its end: a longer one is refused by number.
pub const MAX_LINE: usize = 8 << 20;

/// Streaming JSONL checker.
#[derive(Debug, Default)]
pub struct Lines {
    /// The current line's bytes so far (up to [`MAX_LINE`]).
    partial: Vec<u8>,
    /// 1-based number of the current line.
    line: u64,
    /// Non-empty lines seen whole.
    objects: u64,
    /// The first problem, with its line number; later bytes are not looked at.
    problem: Option<String>,
}

impl Lines {
    /// Feeds the next chunk of the file.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while self.problem.is_none() && !chunk.is_empty() {
            match chunk.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.extend(&chunk[..end]);
                    self.end_line();
                    chunk = &chunk[end + 1..];
                }
                None => {
                    self.extend(chunk);
                    chunk = &[];
                }
            }
        }
    }

    fn extend(&mut self, bytes: &[u8]) {
        if self.problem.is_some() {
            return;
        }
        if self.partial.len() + bytes.len() > MAX_LINE {
            self.problem = Some(format!(
                "line {} is longer than {MAX_LINE} bytes",
                self.line + 1
            ));
            return;
        }
        self.partial.extend_from_slice(bytes);
    }

    fn end_line(&mut self) {
        if self.problem.is_some() {
            return;
        }
        self.line += 1;
        let text = std::mem::take(&mut self.partial);
        let trimmed = text.trim_ascii();
        if trimmed.is_empty() {
            return;
        }
        match serde_json::from_slice::<serde_json::Value>(trimmed) {
            Ok(serde_json::Value::Object(_)) => self.objects += 1,
            Ok(_) => {
                self.problem = Some(format!("line {} is not a JSON object", self.line));
            }
            Err(e) => {
                self.problem = Some(format!("line {} is not valid JSON: {e}", self.line));
            }
        }
    }

    /// After the last chunk: the first problem, if any (an empty file is one).
    pub fn finish(mut self) -> Result<u64, String> {
        if !self.partial.is_empty() {
            self.end_line();
        }
        if let Some(p) = self.problem {
            return Err(p);
        }
        if self.objects == 0 {
            return Err("the file has no JSON lines".into());
        }
        Ok(self.objects)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(chunks: &[&str]) -> Result<u64, String> {
        let mut l = Lines::default();
        for c in chunks {
            l.feed(c.as_bytes());
        }
        l.finish()
    }

    #[test]
    fn lines_split_anywhere_are_read_whole() {
        assert_eq!(check(&["{\"a\":", "1}\n{\"b\"", ":2}\r\n\n{}"]), Ok(3));
        assert_eq!(check(&["{}\n", "\n", "{}\n"]), Ok(2));
    }

    #[test]
    fn the_first_bad_line_is_named() {
        assert_eq!(
            check(&["{}\n[1]\n{}"]),
            Err("line 2 is not a JSON object".into())
        );
        let e = check(&["{}\n{}\n{\"a\": tru", "e, }\n"]).unwrap_err();
        assert!(e.starts_with("line 3 is not valid JSON"), "{e}");
        assert_eq!(
            check(&["", "\n \n"]),
            Err("the file has no JSON lines".into())
        );
        let long = "x".repeat(MAX_LINE);
        let e = check(&["{}\n", &long, "y"]).unwrap_err();
        assert_eq!(e, format!("line 2 is longer than {MAX_LINE} bytes"));
    }
}
