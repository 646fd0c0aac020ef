//! Tokens of PTX text: identifiers and dotted opcodes, numbers, strings and punctuation, each with its line.

use super::ParseError;

#[derive(Clone, Debug, PartialEq)]
pub enum Tok {
    /// Identifiers, directives, opcodes and registers: `ld.global.f32`, `.reg`, `%r1`, `%tid.x`, `$L__BB0_1`.
    Ident(String),
    /// A number as written (`12`, `0x1F`, `0f3F800000`, `0d4008000000000000`, `1.5e3`, `9.0`).
    Num(String),
    Str(String),
    Punct(char),
}

#[derive(Clone, Debug)]
pub struct Token {
    pub tok: Tok,
    pub line: usize,
}

fn ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || matches!(c, b'_' | b'$' | b'%' | b'.')
}

fn ident_cont(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'$' | b'%' | b'.' | b':')
}

pub fn lex(text: &str) -> Result<Vec<Token>, ParseError> {
    let s = text.as_bytes();
    let mut out = Vec::with_capacity(text.len() / 4);
    let mut i = 0;
    let mut line = 1;
    while i < s.len() {
        let c = s[i];
        if c == b'\n' {
            line += 1;
            i += 1;
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'/' && s.get(i + 1) == Some(&b'/') {
            while i < s.len() && s[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && s.get(i + 1) == Some(&b'*') {
            i += 2;
            while i < s.len() && !(s[i] == b'*' && s.get(i + 1) == Some(&b'/')) {
                if s[i] == b'\n' {
                    line += 1;
                }
                i += 1;
            }
            i += 2;
        } else if c == b'"' {
            let st = i + 1;
            i += 1;
            while i < s.len() && s[i] != b'"' {
                i += 1;
            }
            out.push(Token { tok: Tok::Str(text[st..i.min(s.len())].to_string()), line });
            i += 1;
        } else if c.is_ascii_digit() {
            let st = i;
            while i < s.len() && (s[i].is_ascii_alphanumeric() || s[i] == b'.') {
                // exponent sign: 1.5e-3
                i += 1;
                if i < s.len() && matches!(s[i], b'+' | b'-') && matches!(s[i - 1], b'e' | b'E') {
                    let t = &text[st..i];
                    if !t.starts_with("0x") && !t.starts_with("0f") && !t.starts_with("0d") {
                        i += 1;
                    }
                }
            }
            out.push(Token { tok: Tok::Num(text[st..i].to_string()), line });
        } else if ident_start(c) {
            let st = i;
            i += 1;
            while i < s.len() && ident_cont(s[i]) {
                // a label definition `name:` ends at the colon unless `::` (as in `.L2::128B`)
                if s[i] == b':' && s.get(i + 1) != Some(&b':') && s.get(i - 1) != Some(&b':') {
                    break;
                }
                i += 1;
            }
            out.push(Token { tok: Tok::Ident(text[st..i].to_string()), line });
        } else if b",;:[]{}()+-|!@<>=".contains(&c) {
            out.push(Token { tok: Tok::Punct(c as char), line });
            i += 1;
        } else {
            return Err(ParseError { line, message: format!("unexpected character {:?}", c as char) });
        }
    }
    Ok(out)
}
