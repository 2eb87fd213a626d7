//! A parser for the libconfig configuration syntax used by meta files and `gala-gopher.conf`.
//!
//! Supported: `name = value` / `name : value` settings ended by an optional `;` or `,`, groups
//! `{ }`, lists `( )` and arrays `[ ]` (both become [`Value::List`]) with trailing commas, `#`,
//! `//` and `/* */` comments, case-insensitive booleans, decimal and hex integers with optional
//! `L`/`LL` suffix, floats, and strings with escapes where adjacent literals are concatenated.
//! `@include` is rejected. Nesting deeper than [`MAX_DEPTH`] is an error, so no input can
//! exhaust the stack.

use std::collections::HashSet;

/// Deepest nesting of groups and lists accepted.
pub const MAX_DEPTH: usize = 64;

/// A syntax error with the 1-based line it was found on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct SyntaxError {
    /// 1-based line of the offending token.
    pub line: u32,
    /// What is wrong.
    pub message: String,
}

/// A value together with the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// 1-based line where the value starts.
    pub line: u32,
    /// The value itself.
    pub value: Value,
}

/// A libconfig value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `true` / `false` (any case).
    Bool(bool),
    /// A decimal or hex integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string (adjacent literals already concatenated, escapes resolved).
    Str(String),
    /// A `{ ... }` group of named settings.
    Group(Group),
    /// A `( ... )` list or a `[ ... ]` array.
    List(Vec<Node>),
}

impl Value {
    /// The name of this value's type as used in error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Group(_) => "group",
            Value::List(_) => "list",
        }
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The boolean, if this is a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The number as `f64`, if this is an integer or a float.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// The group, if this is a group.
    pub fn as_group(&self) -> Option<&Group> {
        match self {
            Value::Group(g) => Some(g),
            _ => None,
        }
    }

    /// The elements, if this is a list or an array.
    pub fn as_list(&self) -> Option<&[Node]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
}

/// An ordered set of uniquely named settings: a `{ ... }` group or a whole file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    /// The settings in file order.
    pub settings: Vec<Setting>,
}

impl Group {
    /// The first setting called `name`.
    pub fn get(&self, name: &str) -> Option<&Setting> {
        self.settings.iter().find(|s| s.name == name)
    }
}

/// One `name = value` setting.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// The setting name.
    pub name: String,
    /// 1-based line of the name.
    pub line: u32,
    /// The value.
    pub value: Node,
}

/// Parses a whole libconfig document; the file is the top-level group.
pub fn parse(src: &str) -> Result<Group, SyntaxError> {
    let mut p = Parser {
        lx: Lexer {
            src: src.as_bytes(),
            pos: 0,
            line: 1,
        },
        peeked: None,
    };
    let group = p.settings(0, None)?;
    Ok(group)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok<'a> {
    Name(&'a str),
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Equals,
    Comma,
    Semicolon,
    GroupStart,
    GroupEnd,
    ListStart,
    ListEnd,
    ArrayStart,
    ArrayEnd,
    Eof,
}

impl Tok<'_> {
    fn describe(&self) -> String {
        match self {
            Tok::Name(n) => format!("name \"{n}\""),
            Tok::Bool(b) => format!("boolean {b}"),
            Tok::Int(i) => format!("integer {i}"),
            Tok::Float(f) => format!("float {f}"),
            Tok::Str(_) => "string".to_owned(),
            Tok::Equals => "'='".to_owned(),
            Tok::Comma => "','".to_owned(),
            Tok::Semicolon => "';'".to_owned(),
            Tok::GroupStart => "'{'".to_owned(),
            Tok::GroupEnd => "'}'".to_owned(),
            Tok::ListStart => "'('".to_owned(),
            Tok::ListEnd => "')'".to_owned(),
            Tok::ArrayStart => "'['".to_owned(),
            Tok::ArrayEnd => "']'".to_owned(),
            Tok::Eof => "end of file".to_owned(),
        }
    }
}

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: u32,
}

fn err<T>(line: u32, message: impl Into<String>) -> Result<T, SyntaxError> {
    Err(SyntaxError {
        line,
        message: message.into(),
    })
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'*'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*')
}

impl<'a> Lexer<'a> {
    fn peek_byte(&self, off: usize) -> Option<u8> {
        self.src.get(self.pos + off).copied()
    }

    /// Skips whitespace and comments.
    fn skip_trivia(&mut self) -> Result<(), SyntaxError> {
        while let Some(b) = self.peek_byte(0) {
            match b {
                b'\n' => {
                    self.line = self.line.saturating_add(1);
                    self.pos += 1;
                }
                b' ' | b'\t' | b'\r' | b'\x0c' => self.pos += 1,
                b'#' => self.skip_line(),
                b'/' if self.peek_byte(1) == Some(b'/') => self.skip_line(),
                b'/' if self.peek_byte(1) == Some(b'*') => {
                    let start_line = self.line;
                    self.pos += 2;
                    loop {
                        match self.peek_byte(0) {
                            None => return err(start_line, "unterminated /* comment"),
                            Some(b'*') if self.peek_byte(1) == Some(b'/') => {
                                self.pos += 2;
                                break;
                            }
                            Some(b'\n') => {
                                self.line = self.line.saturating_add(1);
                                self.pos += 1;
                            }
                            Some(_) => self.pos += 1,
                        }
                    }
                }
                _ => break,
            }
        }
        Ok(())
    }

    fn skip_line(&mut self) {
        match memchr::memchr(b'\n', &self.src[self.pos..]) {
            Some(off) => self.pos += off,
            None => self.pos = self.src.len(),
        }
    }

    /// Returns the next token and the line it starts on.
    fn next(&mut self) -> Result<(Tok<'a>, u32), SyntaxError> {
        self.skip_trivia()?;
        let line = self.line;
        let Some(b) = self.peek_byte(0) else {
            return Ok((Tok::Eof, line));
        };
        let simple = match b {
            b'=' | b':' => Some(Tok::Equals),
            b',' => Some(Tok::Comma),
            b';' => Some(Tok::Semicolon),
            b'{' => Some(Tok::GroupStart),
            b'}' => Some(Tok::GroupEnd),
            b'(' => Some(Tok::ListStart),
            b')' => Some(Tok::ListEnd),
            b'[' => Some(Tok::ArrayStart),
            b']' => Some(Tok::ArrayEnd),
            _ => None,
        };
        if let Some(tok) = simple {
            self.pos += 1;
            return Ok((tok, line));
        }
        let tok = match b {
            b'"' => Tok::Str(self.string()?),
            b'@' => {
                if self.src[self.pos..].starts_with(b"@include") {
                    return err(line, "@include is not supported");
                }
                return err(line, "unexpected character '@'");
            }
            b'0'..=b'9' | b'+' | b'-' | b'.' => self.number(line)?,
            _ if is_name_start(b) => {
                let start = self.pos;
                while self.peek_byte(0).is_some_and(is_name_char) {
                    self.pos += 1;
                }
                let word = &self.src[start..self.pos];
                if word.eq_ignore_ascii_case(b"true") {
                    Tok::Bool(true)
                } else if word.eq_ignore_ascii_case(b"false") {
                    Tok::Bool(false)
                } else {
                    // Name bytes are ASCII, so this cannot fail.
                    match std::str::from_utf8(word) {
                        Ok(s) => Tok::Name(s),
                        Err(_) => return err(line, "invalid name"),
                    }
                }
            }
            _ => {
                let shown = self.src[self.pos..]
                    .utf8_chunks()
                    .next()
                    .and_then(|c| c.valid().chars().next())
                    .unwrap_or('?');
                return err(line, format!("unexpected character {shown:?}"));
            }
        };
        Ok((tok, line))
    }

    /// Lexes a string literal starting at the opening quote.
    fn string(&mut self) -> Result<String, SyntaxError> {
        let start_line = self.line;
        self.pos += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let rest = &self.src[self.pos..];
            let Some(off) = memchr::memchr3(b'"', b'\\', b'\n', rest) else {
                return err(start_line, "unterminated string");
            };
            out.extend_from_slice(&rest[..off]);
            self.pos += off;
            match rest[off] {
                b'"' => {
                    self.pos += 1;
                    break;
                }
                b'\n' => {
                    out.push(b'\n');
                    self.line = self.line.saturating_add(1);
                    self.pos += 1;
                }
                _ => {
                    // Backslash escape; an unknown escape keeps the backslash (as libconfig does).
                    let esc = self.peek_byte(1);
                    let (bytes, len): (u8, usize) = match esc {
                        Some(b'n') => (b'\n', 2),
                        Some(b'r') => (b'\r', 2),
                        Some(b't') => (b'\t', 2),
                        Some(b'f') => (b'\x0c', 2),
                        Some(b'\\') => (b'\\', 2),
                        Some(b'"') => (b'"', 2),
                        Some(b'x' | b'X') => {
                            match (hex_val(self.peek_byte(2)), hex_val(self.peek_byte(3))) {
                                (Some(h), Some(l)) => ((h << 4) | l, 4),
                                _ => (b'\\', 1),
                            }
                        }
                        _ => (b'\\', 1),
                    };
                    out.push(bytes);
                    self.pos += len;
                }
            }
        }
        String::from_utf8(out).map_err(|_| SyntaxError {
            line: start_line,
            message: "string is not valid UTF-8".to_owned(),
        })
    }

    /// Lexes an integer or float starting at a digit, sign or dot.
    fn number(&mut self, line: u32) -> Result<Tok<'a>, SyntaxError> {
        let start = self.pos;
        let mut i = self.pos;
        let src = self.src;
        let at = |i: usize| src.get(i).copied();
        let signed = matches!(at(i), Some(b'+' | b'-'));
        if signed {
            i += 1;
        }
        // Hex (unsigned only, like libconfig).
        if !signed && at(i) == Some(b'0') && matches!(at(i + 1), Some(b'x' | b'X')) {
            let digits_start = i + 2;
            let mut j = digits_start;
            while at(j).is_some_and(|b| b.is_ascii_hexdigit()) {
                j += 1;
            }
            if j == digits_start {
                return err(line, "invalid hex number");
            }
            let digits = &src[digits_start..j];
            j = skip_long_suffix(src, j);
            self.pos = j;
            self.check_number_end(line)?;
            let mut v: u64 = 0;
            for &d in digits {
                let Some(h) = hex_val(Some(d)) else {
                    return err(line, "invalid hex number");
                };
                v = match v.checked_mul(16) {
                    Some(v) => v | u64::from(h),
                    None => return err(line, "hex integer out of range"),
                };
            }
            // Bit pattern, as libconfig's strtoull-based 64-bit hex.
            return Ok(Tok::Int(v as i64));
        }
        let int_start = i;
        while at(i).is_some_and(|b| b.is_ascii_digit()) {
            i += 1;
        }
        let int_digits = i - int_start;
        let mut is_float = false;
        let mut frac_digits = 0;
        if at(i) == Some(b'.') {
            is_float = true;
            i += 1;
            let f = i;
            while at(i).is_some_and(|b| b.is_ascii_digit()) {
                i += 1;
            }
            frac_digits = i - f;
        }
        if int_digits + frac_digits == 0 {
            return err(line, "invalid number");
        }
        if matches!(at(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(at(j), Some(b'+' | b'-')) {
                j += 1;
            }
            let e = j;
            while at(j).is_some_and(|b| b.is_ascii_digit()) {
                j += 1;
            }
            if j == e {
                return err(line, "invalid number exponent");
            }
            is_float = true;
            i = j;
        }
        if is_float {
            self.pos = i;
            self.check_number_end(line)?;
            let text = std::str::from_utf8(&src[start..i]).unwrap_or("");
            return match text.parse::<f64>() {
                Ok(f) => Ok(Tok::Float(f)),
                Err(_) => err(line, format!("invalid float {text:?}")),
            };
        }
        let end = i;
        self.pos = skip_long_suffix(src, i);
        self.check_number_end(line)?;
        let text = std::str::from_utf8(&src[start..end]).unwrap_or("");
        match text.parse::<i64>() {
            Ok(v) => Ok(Tok::Int(v)),
            Err(_) => err(line, format!("integer {text} out of range")),
        }
    }

    /// A number must not run straight into a name character (`12ab`).
    fn check_number_end(&self, line: u32) -> Result<(), SyntaxError> {
        match self.peek_byte(0) {
            Some(b) if is_name_char(b) || b == b'.' => err(line, "invalid number"),
            _ => Ok(()),
        }
    }
}

fn skip_long_suffix(src: &[u8], mut i: usize) -> usize {
    if src.get(i) == Some(&b'L') {
        i += 1;
        if src.get(i) == Some(&b'L') {
            i += 1;
        }
    }
    i
}

fn hex_val(b: Option<u8>) -> Option<u8> {
    match b? {
        d @ b'0'..=b'9' => Some(d - b'0'),
        d @ b'a'..=b'f' => Some(d - b'a' + 10),
        d @ b'A'..=b'F' => Some(d - b'A' + 10),
        _ => None,
    }
}

struct Parser<'a> {
    lx: Lexer<'a>,
    peeked: Option<(Tok<'a>, u32)>,
}

impl<'a> Parser<'a> {
    fn next(&mut self) -> Result<(Tok<'a>, u32), SyntaxError> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lx.next(),
        }
    }

    fn peek(&mut self) -> Result<&(Tok<'a>, u32), SyntaxError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lx.next()?);
        }
        match &self.peeked {
            Some(t) => Ok(t),
            None => err(self.lx.line, "internal lexer error"),
        }
    }

    /// Parses settings until `end` (a `}`) or end of file when `end` is `None`.
    fn settings(&mut self, depth: usize, end: Option<u32>) -> Result<Group, SyntaxError> {
        let mut settings = Vec::new();
        let mut seen: HashSet<&'a str> = HashSet::new();
        loop {
            let (tok, line) = self.next()?;
            let name = match tok {
                Tok::Eof if end.is_none() => break,
                Tok::Eof => {
                    return err(
                        line,
                        format!(
                            "unexpected end of file: group opened on line {} is not closed",
                            end.unwrap_or(line)
                        ),
                    )
                }
                Tok::GroupEnd if end.is_some() => break,
                Tok::Name(n) => n,
                other => {
                    return err(
                        line,
                        format!("expected a setting name, found {}", other.describe()),
                    )
                }
            };
            match self.next()? {
                (Tok::Equals, _) => {}
                (other, l) => {
                    return err(
                        l,
                        format!(
                            "expected '=' or ':' after \"{name}\", found {}",
                            other.describe()
                        ),
                    )
                }
            }
            let value = self.value(depth)?;
            if matches!(self.peek()?.0, Tok::Semicolon | Tok::Comma) {
                self.next()?;
            }
            if !seen.insert(name) {
                return err(line, format!("duplicate setting \"{name}\""));
            }
            settings.push(Setting {
                name: name.to_owned(),
                line,
                value,
            });
        }
        Ok(Group { settings })
    }

    fn value(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        let (tok, line) = self.next()?;
        let value = match tok {
            Tok::Bool(b) => Value::Bool(b),
            Tok::Int(i) => Value::Int(i),
            Tok::Float(f) => Value::Float(f),
            Tok::Str(mut s) => {
                while let (Tok::Str(_), _) = self.peek()? {
                    if let Some((Tok::Str(more), _)) = self.peeked.take() {
                        s.push_str(&more);
                    }
                }
                Value::Str(s)
            }
            Tok::GroupStart => {
                self.check_depth(depth, line)?;
                Value::Group(self.settings(depth + 1, Some(line))?)
            }
            Tok::ListStart => {
                self.check_depth(depth, line)?;
                Value::List(self.list(depth + 1, line, Tok::ListEnd)?)
            }
            Tok::ArrayStart => {
                self.check_depth(depth, line)?;
                Value::List(self.list(depth + 1, line, Tok::ArrayEnd)?)
            }
            other => {
                return err(
                    line,
                    format!("expected a value, found {}", other.describe()),
                )
            }
        };
        Ok(Node { line, value })
    }

    fn check_depth(&self, depth: usize, line: u32) -> Result<(), SyntaxError> {
        if depth >= MAX_DEPTH {
            return err(line, format!("nesting deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    /// Parses list elements up to `close`: values separated by commas, trailing commas allowed.
    fn list(
        &mut self,
        depth: usize,
        open_line: u32,
        close: Tok<'a>,
    ) -> Result<Vec<Node>, SyntaxError> {
        let mut items = Vec::new();
        loop {
            let (tok, line) = self.peek()?;
            if *tok == close {
                self.next()?;
                break;
            }
            if *tok == Tok::Eof {
                return err(
                    *line,
                    format!(
                        "unexpected end of file: list opened on line {open_line} is not closed"
                    ),
                );
            }
            items.push(self.value(depth)?);
            let (tok, line) = self.next()?;
            if tok == close {
                break;
            }
            if tok != Tok::Comma {
                return err(
                    line,
                    format!(
                        "expected ',' or {}, found {}",
                        close.describe(),
                        tok.describe()
                    ),
                );
            }
            while self.peek()?.0 == Tok::Comma {
                self.next()?;
            }
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn val(src: &str) -> Value {
        let g = parse(&format!("v = {src};")).expect("parses");
        g.get("v").expect("has v").value.value.clone()
    }

    fn syntax_err(src: &str) -> SyntaxError {
        parse(src).expect_err("must fail")
    }

    #[test]
    fn scalars() {
        assert_eq!(val("true"), Value::Bool(true));
        assert_eq!(val("FaLsE"), Value::Bool(false));
        assert_eq!(val("42"), Value::Int(42));
        assert_eq!(val("-42"), Value::Int(-42));
        assert_eq!(val("+7"), Value::Int(7));
        assert_eq!(val("0x1F"), Value::Int(31));
        assert_eq!(val("0XffL"), Value::Int(255));
        assert_eq!(val("10000000000LL"), Value::Int(10_000_000_000));
        assert_eq!(val("9L"), Value::Int(9));
        assert_eq!(val("0xFFFFFFFFFFFFFFFF"), Value::Int(-1));
        assert_eq!(val("1.0"), Value::Float(1.0));
        assert_eq!(val(".5"), Value::Float(0.5));
        assert_eq!(val("1."), Value::Float(1.0));
        assert_eq!(val("1e3"), Value::Float(1000.0));
        assert_eq!(val("-2.5E-3"), Value::Float(-0.0025));
        assert_eq!(val("\"hi\""), Value::Str("hi".into()));
    }

    #[test]
    fn strings() {
        assert_eq!(
            val(r#""a\\b\"c\n\r\t\f\x41""#),
            Value::Str("a\\b\"c\n\r\t\x0cA".into())
        );
        assert_eq!(val(r#""a" "b"  /* c */ "c""#), Value::Str("abc".into()));
        // Unknown escapes keep the backslash, as libconfig does.
        assert_eq!(val(r#""\d+\x4""#), Value::Str("\\d+\\x4".into()));
        assert_eq!(val("\"multi\nline\""), Value::Str("multi\nline".into()));
        assert_eq!(val("\"ünï\""), Value::Str("ünï".into()));
        assert_eq!(syntax_err("v = \"\\xff\";").line, 1);
        assert!(syntax_err("v = \"abc").message.contains("unterminated"));
    }

    #[test]
    fn integers_out_of_range() {
        assert!(syntax_err("v = 99999999999999999999;")
            .message
            .contains("out of range"));
        assert!(syntax_err("v = 0x1FFFFFFFFFFFFFFFF;")
            .message
            .contains("out of range"));
        assert!(syntax_err("v = 12ab;").message.contains("invalid number"));
        assert!(syntax_err("v = 1e;").message.contains("exponent"));
        assert!(syntax_err("v = .;").message.contains("invalid number"));
        assert!(syntax_err("v = 0x;").message.contains("hex"));
    }

    #[test]
    fn groups_lists_arrays() {
        let src = r#"
            # comment
            top: {
                a = 1; b = "x", // trailing comma as terminator
                list = ( { n = 1; }, { n = 2; }, );
                arr = [1, 2, 3,];
                empty = ();
                empty_arr = [];
                nested = ((1), [2]);
            };
        "#;
        let g = parse(src).expect("parses");
        let top = g.get("top").expect("top");
        assert_eq!(top.line, 3);
        let Value::Group(inner) = &top.value.value else {
            panic!("group expected");
        };
        assert_eq!(inner.settings.len(), 7);
        let list = inner.get("list").and_then(|s| s.value.value.as_list());
        assert_eq!(list.map(<[Node]>::len), Some(2));
        let arr = inner.get("arr").and_then(|s| s.value.value.as_list());
        assert_eq!(
            arr.map(|a| a
                .iter()
                .filter_map(|n| n.value.as_int())
                .collect::<Vec<_>>()),
            Some(vec![1, 2, 3])
        );
        assert_eq!(
            inner.get("empty").map(|s| s.value.value.clone()),
            Some(Value::List(vec![]))
        );
        assert_eq!(inner.get("a").map(|s| s.line), Some(4));
        assert_eq!(inner.get("list").map(|s| s.value.line), Some(5));
    }

    #[test]
    fn value_line_differs_from_setting_line() {
        let g = parse("a =\n\n  (\n1);").expect("parses");
        let s = g.get("a").expect("a");
        assert_eq!(s.line, 1);
        assert_eq!(s.value.line, 3);
        assert_eq!(s.value.value.as_list().map(|l| l[0].line), Some(4));
    }

    #[test]
    fn names() {
        let g = parse("a-b_c* = 1; *x = 2; Z9 : 3").expect("parses");
        let names: Vec<_> = g.settings.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a-b_c*", "*x", "Z9"]);
        assert!(syntax_err("9a = 1;").message.contains("invalid number"));
        assert!(syntax_err("9 = 1;").message.contains("setting name"));
        assert!(syntax_err("_a = 1;")
            .message
            .contains("unexpected character"));
    }

    #[test]
    fn comments() {
        let g = parse("/* a\n b */ x = 1; # c\n// d\ny = 2 /* e */;").expect("parses");
        assert_eq!(g.get("y").map(|s| s.line), Some(4));
        assert!(syntax_err("/* open").message.contains("unterminated"));
    }

    #[test]
    fn errors_carry_lines() {
        let e = syntax_err("a = 1;\nb = 2;\na = 3;");
        assert_eq!(e.line, 3);
        assert!(e.message.contains("duplicate setting \"a\""), "{e}");
        assert_eq!(e.to_string(), "line 3: duplicate setting \"a\"");

        let e = syntax_err("\n  @include \"x.cfg\"");
        assert_eq!(
            (e.line, e.message.as_str()),
            (2, "@include is not supported")
        );

        let e = syntax_err("a = {\n b = 1;\n");
        assert!(e.message.contains("not closed"), "{e}");
        let e = syntax_err("a = (1 2);");
        assert!(e.message.contains("expected ','"), "{e}");
        let e = syntax_err("a = ;");
        assert!(e.message.contains("expected a value"), "{e}");
        let e = syntax_err("a 1;");
        assert!(e.message.contains("expected '='"), "{e}");
        let e = syntax_err("}");
        assert!(e.message.contains("setting name"), "{e}");
        let e = syntax_err("a = (,1);");
        assert!(e.message.contains("expected a value"), "{e}");
        // Same names in different groups are fine.
        assert!(parse("a = { x = 1; }; b = { x = 1; };").is_ok());
    }

    #[test]
    fn depth_is_limited() {
        let ok = format!("a = {}1{};", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        let deep = format!(
            "a = {}1{};",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert!(parse(&deep)
            .expect_err("too deep")
            .message
            .contains("nesting"));
        let huge = "a = ".to_owned() + &"[".repeat(100_000);
        assert!(parse(&huge).is_err());
    }

    #[test]
    fn empty_and_trivia_only() {
        assert_eq!(parse("").map(|g| g.settings.len()), Ok(0));
        assert_eq!(parse("  # only\n/* c */").map(|g| g.settings.len()), Ok(0));
    }

    #[test]
    fn type_names() {
        let names: Vec<_> = [
            Value::Bool(true),
            Value::Int(1),
            Value::Float(1.0),
            Value::Str(String::new()),
            Value::Group(Group::default()),
            Value::List(vec![]),
        ]
        .iter()
        .map(Value::type_name)
        .collect();
        assert_eq!(names, ["bool", "int", "float", "string", "group", "list"]);
    }

    /// Serializes a value back to libconfig text.
    fn render(v: &Value, out: &mut String) {
        match v {
            Value::Bool(b) => out.push_str(if *b { "TRUE" } else { "false" }),
            Value::Int(i) => out.push_str(&i.to_string()),
            Value::Float(f) => out.push_str(&format!("{f:?}")),
            Value::Str(s) => {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        '\t' => out.push_str("\\t"),
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            Value::Group(g) => {
                out.push('{');
                for s in &g.settings {
                    out.push_str(&s.name);
                    out.push_str(" = ");
                    render(&s.value.value, out);
                    out.push_str(";\n");
                }
                out.push('}');
            }
            Value::List(l) => {
                out.push('(');
                for n in l {
                    render(&n.value, out);
                    out.push_str(", ");
                }
                out.push(')');
            }
        }
    }

    fn strip_lines(v: &Value) -> Value {
        match v {
            Value::Group(g) => Value::Group(Group {
                settings: g
                    .settings
                    .iter()
                    .map(|s| Setting {
                        name: s.name.clone(),
                        line: 0,
                        value: Node {
                            line: 0,
                            value: strip_lines(&s.value.value),
                        },
                    })
                    .collect(),
            }),
            Value::List(l) => Value::List(
                l.iter()
                    .map(|n| Node {
                        line: 0,
                        value: strip_lines(&n.value),
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            (-1.0e9f64..1.0e9).prop_map(Value::Float),
            "[a-z \"\\\\\n\tü]{0,8}".prop_map(Value::Str),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(|v| Value::List(
                    v.into_iter().map(|value| Node { line: 0, value }).collect()
                )),
                prop::collection::btree_map("[a-z][a-z0-9_-]{0,5}", inner, 0..4).prop_map(|m| {
                    Value::Group(Group {
                        settings: m
                            .into_iter()
                            .filter(|(k, _)| {
                                !k.eq_ignore_ascii_case("true") && !k.eq_ignore_ascii_case("false")
                            })
                            .map(|(name, value)| Setting {
                                name,
                                line: 0,
                                value: Node { line: 0, value },
                            })
                            .collect(),
                    })
                }),
            ]
        })
    }

    const SAMPLE: &str = "version = \"1.0.0\";\nm: ( { a = 1; b = \"x\\n\"; c = [1, 2,], }, );\n/* x */ f = -2.5e3; h = 0x10L;\n";

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn never_panics_on_random_text(s in "\\PC{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_syntax_soup(s in "[{}()\\[\\];:,=\"\\\\/*#@a-z0-9.xL+\\- \n]{0,200}") {
            if let Err(e) = parse(&s) {
                prop_assert!(e.line >= 1);
                prop_assert!(e.line as usize <= s.matches('\n').count() + 1);
            }
        }

        #[test]
        fn never_panics_on_mutated_sample(pos in 0usize..SAMPLE.len(), len in 0usize..8, ins in "\\PC{0,4}") {
            let mut s = SAMPLE.to_owned();
            let pos = (0..=pos).rev().find(|p| s.is_char_boundary(*p)).unwrap_or(0);
            let end = (pos + len).min(s.len());
            let end = (end..=s.len()).find(|p| s.is_char_boundary(*p)).unwrap_or(s.len());
            s.replace_range(pos..end, &ins);
            let _ = parse(&s);
        }

        #[test]
        fn rendered_values_round_trip(v in arb_value()) {
            let mut text = String::from("v = ");
            render(&v, &mut text);
            text.push(';');
            let g = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            let got = g.get("v").map(|s| strip_lines(&s.value.value));
            prop_assert_eq!(got, Some(strip_lines(&v)));
        }
    }
}
