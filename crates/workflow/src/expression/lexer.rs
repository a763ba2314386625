//! The tokenizer of the expression language.

use super::ExpressionError;
use super::value::parse_number;

/// A token kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Token {
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `.`
    Dot,
    /// `,`
    Comma,
    /// `*` (a filter)
    Star,
    /// `!`
    Not,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `&&`
    And,
    /// `||`
    Or,
    /// A single-quoted string literal, unescaped.
    Str(String),
    /// A number literal.
    Num(f64),
    /// A name: a context, a function, a property, or `true`/`false`/`null`.
    Ident(String),
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Spanned {
    /// The token.
    pub token: Token,
    /// Byte offset in the expression.
    pub at: usize,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// Splits `src` into tokens.
pub fn tokenize(src: &str) -> Result<Vec<Spanned>, ExpressionError> {
    let b = src.as_bytes();
    let mut out: Vec<Spanned> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        // A '.' after a name, ')', ']' or '*' dereferences; elsewhere '.5' is a number.
        let after_operand = matches!(
            out.last().map(|t| &t.token),
            Some(Token::Ident(_) | Token::RParen | Token::RBracket | Token::Star)
        );
        let simple = |t: Token| Spanned {
            token: t,
            at: start,
        };
        let next = b.get(i + 1).copied();
        let token = match c {
            b'(' => simple(Token::LParen),
            b')' => simple(Token::RParen),
            b'[' => simple(Token::LBracket),
            b']' => simple(Token::RBracket),
            b',' => simple(Token::Comma),
            b'*' => simple(Token::Star),
            b'.' if after_operand || !next.is_some_and(|n| n.is_ascii_digit()) => {
                simple(Token::Dot)
            }
            b'!' if next == Some(b'=') => {
                i += 1;
                simple(Token::Ne)
            }
            b'!' => simple(Token::Not),
            b'=' if next == Some(b'=') => {
                i += 1;
                simple(Token::Eq)
            }
            b'<' if next == Some(b'=') => {
                i += 1;
                simple(Token::Le)
            }
            b'<' => simple(Token::Lt),
            b'>' if next == Some(b'=') => {
                i += 1;
                simple(Token::Ge)
            }
            b'>' => simple(Token::Gt),
            b'&' if next == Some(b'&') => {
                i += 1;
                simple(Token::And)
            }
            b'|' if next == Some(b'|') => {
                i += 1;
                simple(Token::Or)
            }
            b'\'' => {
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    match src[j..].find('\'') {
                        None => {
                            return Err(ExpressionError::at(
                                src,
                                start,
                                "Unexpected end of expression: unclosed string",
                            ));
                        }
                        Some(k) => {
                            s.push_str(&src[j..j + k]);
                            j += k + 1;
                            if b.get(j) == Some(&b'\'') {
                                s.push('\'');
                                j += 1;
                            } else {
                                break;
                            }
                        }
                    }
                }
                i = j - 1;
                simple(Token::Str(s))
            }
            b'0'..=b'9' | b'.' | b'-' | b'+' => {
                let mut j = i;
                if c == b'-' || c == b'+' {
                    j += 1;
                }
                while j < b.len() && (is_ident_char(b[j]) || b[j] == b'.') {
                    // An exponent sign belongs to the number: 1e-5, 2.99E+2.
                    if (b[j] == b'e' || b[j] == b'E')
                        && j + 1 < b.len()
                        && (b[j + 1] == b'-' || b[j + 1] == b'+')
                        && !src[i..j].starts_with("0x")
                    {
                        j += 2;
                        continue;
                    }
                    if b[j] == b'-' {
                        break;
                    }
                    j += 1;
                }
                let text = &src[i..j];
                let value = parse_number(text)
                    .filter(|_| text.len() > usize::from(c == b'-' || c == b'+'))
                    .ok_or_else(|| {
                        ExpressionError::at(src, start, format!("Unexpected symbol: '{text}'"))
                    })?;
                i = j - 1;
                simple(Token::Num(value))
            }
            c if is_ident_start(c) => {
                let mut j = i;
                while j < b.len() && is_ident_char(b[j]) {
                    j += 1;
                }
                let name = src[i..j].to_string();
                i = j - 1;
                simple(Token::Ident(name))
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(ExpressionError::at(
                    src,
                    start,
                    format!("Unexpected symbol: '{ch}'"),
                ));
            }
        };
        out.push(token);
        i += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<Token> {
        tokenize(src)
            .unwrap()
            .into_iter()
            .map(|t| t.token)
            .collect()
    }

    #[test]
    fn tokenizes_operators_names_and_literals() {
        assert_eq!(
            kinds("github.event_name == 'push' && !x || a['b'] != 1"),
            vec![
                Token::Ident("github".into()),
                Token::Dot,
                Token::Ident("event_name".into()),
                Token::Eq,
                Token::Str("push".into()),
                Token::And,
                Token::Not,
                Token::Ident("x".into()),
                Token::Or,
                Token::Ident("a".into()),
                Token::LBracket,
                Token::Str("b".into()),
                Token::RBracket,
                Token::Ne,
                Token::Num(1.0),
            ]
        );
    }

    #[test]
    fn numbers_in_every_documented_form() {
        assert_eq!(kinds("711"), vec![Token::Num(711.0)]);
        assert_eq!(kinds("-9.2"), vec![Token::Num(-9.2)]);
        assert_eq!(kinds("0xff"), vec![Token::Num(255.0)]);
        assert_eq!(kinds("-2.99e-2"), vec![Token::Num(-0.0299)]);
        assert_eq!(kinds(".5"), vec![Token::Num(0.5)]);
        assert_eq!(kinds("1E+2"), vec![Token::Num(100.0)]);
    }

    #[test]
    fn names_may_contain_dashes() {
        assert_eq!(
            kinds("steps.write-output.outputs.KEY"),
            vec![
                Token::Ident("steps".into()),
                Token::Dot,
                Token::Ident("write-output".into()),
                Token::Dot,
                Token::Ident("outputs".into()),
                Token::Dot,
                Token::Ident("KEY".into()),
            ]
        );
    }

    #[test]
    fn strings_unescape_doubled_quotes_and_span_lines() {
        assert_eq!(
            kinds("'It''s open source!'"),
            vec![Token::Str("It's open source!".into())]
        );
        assert_eq!(kinds("'a\n b'"), vec![Token::Str("a\n b".into())]);
    }

    #[test]
    fn refuses_what_github_refuses() {
        assert!(tokenize("\"double\"").is_err());
        assert!(tokenize("'unclosed").is_err());
        assert!(tokenize("a = b").is_err());
        assert!(tokenize("1abc").is_err());
    }
}
