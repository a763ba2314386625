//! The parser: tokens to an [`Expr`] tree, with GitHub's operator precedence (from highest):
//! `( )`, `[ ]`, `.`, `!`, `< <= > >=`, `== !=`, `&&`, `||`.

use super::ExpressionError;
use super::lexer::{Spanned, Token, tokenize};
use super::value::Value;

/// A built-in function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `success()`
    Success,
    /// `failure()`
    Failure,
    /// `always()`
    Always,
    /// `cancelled()`
    Cancelled,
    /// `contains(search, item)`
    Contains,
    /// `startsWith(s, prefix)`
    StartsWith,
    /// `endsWith(s, suffix)`
    EndsWith,
    /// `format(fmt, args…)`
    Format,
    /// `join(array, separator?)`
    Join,
    /// `toJSON(value)`
    ToJson,
    /// `fromJSON(text)`
    FromJson,
    /// `hashFiles(patterns…)`
    HashFiles,
}

impl Function {
    /// Looks a function up by name, ignoring case.
    pub fn lookup(name: &str) -> Option<Function> {
        let f = match name.to_ascii_lowercase().as_str() {
            "success" => Function::Success,
            "failure" => Function::Failure,
            "always" => Function::Always,
            "cancelled" => Function::Cancelled,
            "contains" => Function::Contains,
            "startswith" => Function::StartsWith,
            "endswith" => Function::EndsWith,
            "format" => Function::Format,
            "join" => Function::Join,
            "tojson" => Function::ToJson,
            "fromjson" => Function::FromJson,
            "hashfiles" => Function::HashFiles,
            _ => return None,
        };
        Some(f)
    }

    /// The function's documented name.
    pub fn name(self) -> &'static str {
        match self {
            Function::Success => "success",
            Function::Failure => "failure",
            Function::Always => "always",
            Function::Cancelled => "cancelled",
            Function::Contains => "contains",
            Function::StartsWith => "startsWith",
            Function::EndsWith => "endsWith",
            Function::Format => "format",
            Function::Join => "join",
            Function::ToJson => "toJSON",
            Function::FromJson => "fromJSON",
            Function::HashFiles => "hashFiles",
        }
    }

    /// Minimum and maximum number of arguments.
    fn arity(self) -> (usize, usize) {
        match self {
            Function::Success | Function::Failure | Function::Always | Function::Cancelled => {
                (0, 0)
            }
            Function::Contains | Function::StartsWith | Function::EndsWith => (2, 2),
            Function::Format | Function::HashFiles => (1, usize::MAX),
            Function::Join => (1, 2),
            Function::ToJson | Function::FromJson => (1, 1),
        }
    }

    /// Whether this is one of the job-status functions.
    pub fn is_status(self) -> bool {
        matches!(
            self,
            Function::Success | Function::Failure | Function::Always | Function::Cancelled
        )
    }
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
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
}

/// An expression tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A literal.
    Literal(Value),
    /// A named context (`github`, `env`, …).
    Context(String),
    /// `a.b` or `a['b']` with a literal name.
    Property(Box<Expr>, String),
    /// `a[expr]`.
    Index(Box<Expr>, Box<Expr>),
    /// `a.*` or `a[*]`.
    Filter(Box<Expr>),
    /// `!a`.
    Not(Box<Expr>),
    /// `a == b` etc.
    Compare(Comparison, Box<Expr>, Box<Expr>),
    /// `a && b`.
    And(Box<Expr>, Box<Expr>),
    /// `a || b`.
    Or(Box<Expr>, Box<Expr>),
    /// A function call.
    Call(Function, Vec<Expr>),
}

impl Expr {
    /// The expressions directly inside this one.
    fn children(&self) -> Vec<&Expr> {
        match self {
            Expr::Literal(_) | Expr::Context(_) => Vec::new(),
            Expr::Property(e, _) | Expr::Filter(e) | Expr::Not(e) => vec![&**e],
            Expr::Index(a, b) | Expr::Compare(_, a, b) | Expr::And(a, b) | Expr::Or(a, b) => {
                vec![&**a, &**b]
            }
            Expr::Call(_, args) => args.iter().collect(),
        }
    }

    /// Whether this expression, or any inside it, passes `test`.
    fn any(&self, test: &impl Fn(&Expr) -> bool) -> bool {
        test(self) || self.children().into_iter().any(|e| e.any(test))
    }

    /// Whether the expression calls `success()`, `failure()`, `always()` or `cancelled()`
    /// anywhere (if not, an `if:` is implicitly `success() && (…)`).
    pub fn uses_status_function(&self) -> bool {
        self.any(&|e| matches!(e, Expr::Call(f, _) if f.is_status()))
    }

    /// Whether the expression reads the named context (e.g. `matrix`).
    pub fn reads_context(&self, name: &str) -> bool {
        self.any(&|e| matches!(e, Expr::Context(c) if c.eq_ignore_ascii_case(name)))
    }

    /// The arguments of every `hashFiles(…)` call in the expression.
    pub fn hash_files_calls(&self) -> Vec<&[Expr]> {
        let mut calls = Vec::new();
        self.collect_hash_files_calls(&mut calls);
        calls
    }

    fn collect_hash_files_calls<'e>(&'e self, calls: &mut Vec<&'e [Expr]>) {
        if let Expr::Call(Function::HashFiles, args) = self {
            calls.push(args);
        }
        for e in self.children() {
            e.collect_hash_files_calls(calls);
        }
    }
}

/// Parses one expression (the text between `${{` and `}}`, or a bare `if:`).
pub fn parse(src: &str) -> Result<Expr, ExpressionError> {
    let tokens = tokenize(src)?;
    if tokens.is_empty() {
        return Err(ExpressionError::new(src, "Expected an expression"));
    }
    let mut parser = Parser {
        src,
        tokens,
        pos: 0,
    };
    let expr = parser.or()?;
    if let Some(extra) = parser.tokens.get(parser.pos) {
        return Err(parser.unexpected(extra.clone()));
    }
    Ok(expr)
}

struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Spanned>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|t| &t.token)
    }

    fn next(&mut self) -> Option<Spanned> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn eat(&mut self, token: &Token) -> bool {
        if self.peek() == Some(token) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn unexpected(&self, t: Spanned) -> ExpressionError {
        let text = match &t.token {
            Token::Str(s) => format!("'{s}'"),
            Token::Num(n) => super::value::format_number(*n),
            Token::Ident(s) => s.clone(),
            other => symbol(other).to_string(),
        };
        ExpressionError::at(self.src, t.at, format!("Unexpected symbol: '{text}'"))
    }

    fn end(&self) -> ExpressionError {
        ExpressionError::new(self.src, "Unexpected end of expression")
    }

    fn expect(&mut self, token: Token) -> Result<(), ExpressionError> {
        match self.next() {
            Some(t) if t.token == token => Ok(()),
            Some(t) => Err(self.unexpected(t)),
            None => Err(self.end()),
        }
    }

    fn or(&mut self) -> Result<Expr, ExpressionError> {
        let mut left = self.and()?;
        while self.eat(&Token::Or) {
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ExpressionError> {
        let mut left = self.equality()?;
        while self.eat(&Token::And) {
            let right = self.equality()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn equality(&mut self) -> Result<Expr, ExpressionError> {
        let mut left = self.comparison()?;
        loop {
            let op = match self.peek() {
                Some(Token::Eq) => Comparison::Eq,
                Some(Token::Ne) => Comparison::Ne,
                _ => return Ok(left),
            };
            self.pos += 1;
            let right = self.comparison()?;
            left = Expr::Compare(op, Box::new(left), Box::new(right));
        }
    }

    fn comparison(&mut self) -> Result<Expr, ExpressionError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek() {
                Some(Token::Lt) => Comparison::Lt,
                Some(Token::Le) => Comparison::Le,
                Some(Token::Gt) => Comparison::Gt,
                Some(Token::Ge) => Comparison::Ge,
                _ => return Ok(left),
            };
            self.pos += 1;
            let right = self.unary()?;
            left = Expr::Compare(op, Box::new(left), Box::new(right));
        }
    }

    fn unary(&mut self) -> Result<Expr, ExpressionError> {
        if self.eat(&Token::Not) {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, ExpressionError> {
        let mut expr = self.primary()?;
        loop {
            match self.peek() {
                Some(Token::Dot) => {
                    self.pos += 1;
                    match self.next() {
                        Some(Spanned {
                            token: Token::Ident(name),
                            ..
                        }) => expr = Expr::Property(Box::new(expr), name),
                        Some(Spanned {
                            token: Token::Star, ..
                        }) => expr = Expr::Filter(Box::new(expr)),
                        Some(t) => return Err(self.unexpected(t)),
                        None => return Err(self.end()),
                    }
                }
                Some(Token::LBracket) => {
                    self.pos += 1;
                    if self.eat(&Token::Star) {
                        expr = Expr::Filter(Box::new(expr));
                    } else {
                        let index = self.or()?;
                        expr = match index {
                            Expr::Literal(Value::String(name)) => {
                                Expr::Property(Box::new(expr), name)
                            }
                            index => Expr::Index(Box::new(expr), Box::new(index)),
                        };
                    }
                    self.expect(Token::RBracket)?;
                }
                _ => return Ok(expr),
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, ExpressionError> {
        let Some(t) = self.next() else {
            return Err(self.end());
        };
        match t.token {
            Token::Str(s) => Ok(Expr::Literal(Value::String(s))),
            Token::Num(n) => Ok(Expr::Literal(Value::Number(n))),
            Token::LParen => {
                let inner = self.or()?;
                self.expect(Token::RParen)?;
                Ok(inner)
            }
            Token::Ident(name) => {
                if self.peek() == Some(&Token::LParen) {
                    return self.call(&name, t.at);
                }
                Ok(match name.as_str() {
                    "true" => Expr::Literal(Value::Bool(true)),
                    "false" => Expr::Literal(Value::Bool(false)),
                    "null" => Expr::Literal(Value::Null),
                    "NaN" => Expr::Literal(Value::Number(f64::NAN)),
                    "Infinity" => Expr::Literal(Value::Number(f64::INFINITY)),
                    _ => {
                        if !super::eval::CONTEXTS
                            .iter()
                            .any(|c| c.eq_ignore_ascii_case(&name))
                        {
                            return Err(ExpressionError::at(
                                self.src,
                                t.at,
                                format!("Unrecognized named-value: '{name}'"),
                            ));
                        }
                        Expr::Context(name.to_ascii_lowercase())
                    }
                })
            }
            _ => Err(self.unexpected(t)),
        }
    }

    fn call(&mut self, name: &str, at: usize) -> Result<Expr, ExpressionError> {
        let function = Function::lookup(name).ok_or_else(|| {
            ExpressionError::at(self.src, at, format!("Unrecognized function: '{name}'"))
        })?;
        self.expect(Token::LParen)?;
        let mut args = Vec::new();
        if !self.eat(&Token::RParen) {
            loop {
                args.push(self.or()?);
                match self.next() {
                    Some(Spanned {
                        token: Token::Comma,
                        ..
                    }) => continue,
                    Some(Spanned {
                        token: Token::RParen,
                        ..
                    }) => break,
                    Some(t) => return Err(self.unexpected(t)),
                    None => return Err(self.end()),
                }
            }
        }
        let (min, max) = function.arity();
        if args.len() < min {
            return Err(ExpressionError::at(
                self.src,
                at,
                format!(
                    "Too few parameters supplied: '{}' (expects at least {min})",
                    function.name()
                ),
            ));
        }
        if args.len() > max {
            return Err(ExpressionError::at(
                self.src,
                at,
                format!(
                    "Too many parameters supplied: '{}' (expects at most {max})",
                    function.name()
                ),
            ));
        }
        Ok(Expr::Call(function, args))
    }
}

fn symbol(t: &Token) -> &'static str {
    match t {
        Token::LParen => "(",
        Token::RParen => ")",
        Token::LBracket => "[",
        Token::RBracket => "]",
        Token::Dot => ".",
        Token::Comma => ",",
        Token::Star => "*",
        Token::Not => "!",
        Token::Eq => "==",
        Token::Ne => "!=",
        Token::Lt => "<",
        Token::Le => "<=",
        Token::Gt => ">",
        Token::Ge => ">=",
        Token::And => "&&",
        Token::Or => "||",
        Token::Str(_) | Token::Num(_) | Token::Ident(_) => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_binds_and_tighter_than_or() {
        let e = parse("a == 1 || b && !c").unwrap_err();
        // `a`, `b` and `c` are not contexts.
        assert!(
            e.to_string().contains("Unrecognized named-value: 'a'"),
            "{e}"
        );
        let e = parse("env.a == 1 || env.b && !env.c").unwrap();
        assert!(matches!(e, Expr::Or(_, ref r) if matches!(**r, Expr::And(_, _))));
    }

    #[test]
    fn index_with_a_string_is_a_property() {
        assert_eq!(
            parse("github['event']").unwrap(),
            Expr::Property(Box::new(Expr::Context("github".into())), "event".into())
        );
        assert!(matches!(
            parse("github.event.commits[0]").unwrap(),
            Expr::Index(_, _)
        ));
        assert!(matches!(
            parse("github.event.commits.*.id").unwrap(),
            Expr::Property(ref inner, _) if matches!(**inner, Expr::Filter(_))
        ));
        assert!(matches!(
            parse("github.event.commits[*]").unwrap(),
            Expr::Filter(_)
        ));
    }

    #[test]
    fn finds_status_functions() {
        assert!(parse("always()").unwrap().uses_status_function());
        assert!(
            parse("github.ref == 'x' || failure()")
                .unwrap()
                .uses_status_function()
        );
        assert!(
            !parse("contains(github.ref, 'x')")
                .unwrap()
                .uses_status_function()
        );
        assert!(parse("matrix.os").unwrap().reads_context("matrix"));
        let e = parse("hashFiles('a') || format('{0}', hashFiles('b', env.C))").unwrap();
        let calls = e.hash_files_calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].len(), 2);
        assert!(
            parse("format('hashFiles')")
                .unwrap()
                .hash_files_calls()
                .is_empty()
        );
    }

    #[test]
    fn reports_errors_with_position() {
        for (src, want) in [
            ("foo()", "Unrecognized function: 'foo'"),
            ("contains('a')", "Too few parameters supplied: 'contains'"),
            ("toJSON(1, 2)", "Too many parameters supplied: 'toJSON'"),
            ("github.", "Unexpected end of expression"),
            ("(github", "Unexpected end of expression"),
            ("github github", "Unexpected symbol: 'github'"),
            ("1 ==", "Unexpected end of expression"),
            ("", "Expected an expression"),
        ] {
            let err = parse(src).unwrap_err().to_string();
            assert!(err.contains(want), "{src}: {err}");
        }
    }

    #[test]
    fn function_names_ignore_case() {
        assert!(matches!(
            parse("fromJson('1')").unwrap(),
            Expr::Call(Function::FromJson, _)
        ));
        assert!(matches!(
            parse("TOJSON(github)").unwrap(),
            Expr::Call(Function::ToJson, _)
        ));
    }
}
