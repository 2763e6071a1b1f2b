//! Tokens of OpenQASM 2.0 with their 1-based line and column.

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Int(u64),
    Real(f64),
    Str(String),
    Sym(&'static str),
    Eof,
}

impl Tok {
    pub(crate) fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Int(v) => format!("integer `{v}`"),
            Tok::Real(v) => format!("number `{v}`"),
            Tok::Str(s) => format!("string \"{s}\""),
            Tok::Sym(s) => format!("`{s}`"),
            Tok::Eof => "end of input".to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    pub line: usize,
    pub col: usize,
}

const SYMS: &[&str] = &[
    "->", "==", ";", ",", "(", ")", "[", "]", "{", "}", "+", "-", "*", "/", "^",
];

pub(crate) fn lex(src: &str) -> Result<Vec<Token>> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line, mut col) = (0usize, 1usize, 1usize);
    let err = |line: usize, col: usize, m: String| Error::Parse {
        line,
        column: col,
        message: m,
    };
    while i < chars.len() {
        let ch = chars[i];
        if ch == '\n' {
            i += 1;
            line += 1;
            col = 1;
            continue;
        }
        if ch.is_whitespace() {
            i += 1;
            col += 1;
            continue;
        }
        if ch == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if ch == '/' && chars.get(i + 1) == Some(&'*') {
            let (sl, sc) = (line, col);
            i += 2;
            col += 2;
            loop {
                match chars.get(i) {
                    None => return Err(err(sl, sc, "unterminated comment: expected `*/`".into())),
                    Some('*') if chars.get(i + 1) == Some(&'/') => {
                        i += 2;
                        col += 2;
                        break;
                    }
                    Some('\n') => {
                        line += 1;
                        col = 1;
                        i += 1;
                    }
                    Some(_) => {
                        i += 1;
                        col += 1;
                    }
                }
            }
            continue;
        }
        let (tl, tc) = (line, col);
        if ch.is_ascii_alphabetic() || ch == '_' {
            let s = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[s..i].iter().collect();
            col += i - s;
            out.push(Token {
                tok: Tok::Ident(word),
                line: tl,
                col: tc,
            });
            continue;
        }
        if ch.is_ascii_digit()
            || (ch == '.' && chars.get(i + 1).is_some_and(|c| c.is_ascii_digit()))
        {
            let s = i;
            let mut real = false;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if i < chars.len() && chars[i] == '.' {
                real = true;
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    real = true;
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let text: String = chars[s..i].iter().collect();
            col += i - s;
            let tok = if real {
                Tok::Real(
                    text.parse()
                        .map_err(|_| err(tl, tc, format!("malformed number `{text}`")))?,
                )
            } else {
                match text.parse::<u64>() {
                    Ok(v) => Tok::Int(v),
                    Err(_) => Tok::Real(
                        text.parse()
                            .map_err(|_| err(tl, tc, format!("malformed number `{text}`")))?,
                    ),
                }
            };
            out.push(Token {
                tok,
                line: tl,
                col: tc,
            });
            continue;
        }
        if ch == '"' {
            let s = i + 1;
            i += 1;
            col += 1;
            while i < chars.len() && chars[i] != '"' && chars[i] != '\n' {
                i += 1;
                col += 1;
            }
            if chars.get(i) != Some(&'"') {
                return Err(err(
                    tl,
                    tc,
                    "unterminated string: expected closing `\"`".into(),
                ));
            }
            let text: String = chars[s..i].iter().collect();
            i += 1;
            col += 1;
            out.push(Token {
                tok: Tok::Str(text),
                line: tl,
                col: tc,
            });
            continue;
        }
        let mut matched = None;
        for s in SYMS {
            let n = s.chars().count();
            if i + n <= chars.len() && chars[i..i + n].iter().copied().eq(s.chars()) {
                matched = Some(*s);
                break;
            }
        }
        match matched {
            Some(s) => {
                let n = s.len();
                i += n;
                col += n;
                out.push(Token {
                    tok: Tok::Sym(s),
                    line: tl,
                    col: tc,
                });
            }
            None => {
                return Err(err(
                    tl,
                    tc,
                    format!("unexpected character `{}`", ch.escape_debug()),
                ));
            }
        }
    }
    out.push(Token {
        tok: Tok::Eof,
        line,
        col,
    });
    Ok(out)
}
