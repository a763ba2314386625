//! Masking: secrets and `::add-mask::` values are replaced by `***` in everything shown or
//! logged.

/// The values to hide.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// Longest first, so that a value containing another is replaced whole.
    values: Vec<String>,
}

/// What a masked value is replaced with.
pub const MASK: &str = "***";

impl Masker {
    /// A masker hiding nothing.
    pub fn new() -> Self {
        Masker::default()
    }

    /// Hides `value` from now on. A multi-line value is also hidden line by line, since output
    /// is masked a line at a time. Empty and blank values are ignored.
    pub fn add(&mut self, value: &str) {
        let mut candidates = vec![value.trim_end_matches(['\r', '\n'])];
        if value.contains('\n') {
            candidates.extend(value.lines().map(|l| l.trim_end_matches('\r')));
        }
        for v in candidates {
            if v.trim().is_empty() || self.values.iter().any(|known| known == v) {
                continue;
            }
            self.values.push(v.to_string());
        }
        self.values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }

    /// Whether `text` contains a hidden value.
    pub fn reveals(&self, text: &str) -> bool {
        self.values.iter().any(|v| text.contains(v.as_str()))
    }

    /// `text` with every hidden value replaced by `***`.
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        out
    }

    /// Whether nothing is hidden.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_values_longest_first() {
        let mut m = Masker::new();
        m.add("abc");
        m.add("abcdef");
        m.add("");
        m.add("   ");
        assert_eq!(m.mask("x abcdef abc y"), "x *** *** y");
        assert!(m.reveals("zabcz"));
        assert!(!m.reveals("ab"));
    }

    #[test]
    fn multi_line_values_are_masked_per_line() {
        let mut m = Masker::new();
        m.add("line-one\nline-two\n");
        assert_eq!(m.mask("got line-two here"), "got *** here");
        assert_eq!(m.mask("line-one"), "***");
    }
}
