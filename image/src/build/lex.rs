//! Word processing of Dockerfile arguments as Docker's builder does it:
//! quotes, the escape character and variable substitution (`$VAR`,
//! `${VAR}`, `${VAR:-word}`, `${VAR-word}`, `${VAR:+word}`, `${VAR+word}`,
//! `${VAR:?msg}`, `${VAR?msg}`).

use std::collections::BTreeMap;

/// The variables visible to an instruction (ENV of the image, ARGs in scope).
pub type Vars = BTreeMap<String, String>;

/// Why a word could not be processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LexError {
    #[error("unterminated quote in {0:?}")]
    UnterminatedQuote(String),
    #[error("missing '}}' in {0:?}")]
    UnterminatedBrace(String),
    #[error("bad substitution in {0:?}")]
    BadSubstitution(String),
    #[error("{name}: {message}")]
    Required { name: String, message: String },
}

/// Expands one word, keeping whitespace (ENV/LABEL values, WORKDIR, USER, ...).
pub fn process_word(word: &str, vars: &Vars, escape: char) -> Result<String, LexError> {
    let mut lx = Lexer::new(word, vars, escape);
    let words = lx.run(false)?;
    Ok(words.into_iter().next().unwrap_or_default())
}

/// Expands and splits on unquoted whitespace (EXPOSE, VOLUME, COPY sources).
pub fn process_words(line: &str, vars: &Vars, escape: char) -> Result<Vec<String>, LexError> {
    Lexer::new(line, vars, escape).run(true)
}

/// Expands only variables in a heredoc body (unquoted delimiter), as a
/// shell does: quotes stay as they are; the escape character protects `$`
/// and itself.
pub fn process_heredoc(body: &str, vars: &Vars, escape: char) -> Result<String, LexError> {
    let mut lx = Lexer::new(body, vars, escape);
    let mut out = String::new();
    while let Some(c) = lx.next() {
        match c {
            '$' => out.push_str(&lx.dollar()?),
            c if c == escape && matches!(lx.peek(), Some('$')) => {
                out.push('$');
                lx.pos += 1;
            }
            c if c == escape && lx.peek() == Some(escape) => {
                out.push(escape);
                lx.pos += 1;
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    vars: &'a Vars,
    escape: char,
    src: &'a str,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str, vars: &'a Vars, escape: char) -> Self {
        Lexer {
            chars: src.chars().collect(),
            pos: 0,
            vars,
            escape,
            src,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    /// Processes the whole input. With `split`, unquoted whitespace separates
    /// words; a quoted empty string still makes a word.
    fn run(&mut self, split: bool) -> Result<Vec<String>, LexError> {
        let mut words = Vec::new();
        let mut cur = String::new();
        let mut has_word = false;
        while let Some(c) = self.peek() {
            if split && c.is_whitespace() {
                self.pos += 1;
                if has_word {
                    words.push(std::mem::take(&mut cur));
                    has_word = false;
                }
                continue;
            }
            has_word = true;
            let piece = self.unit()?;
            cur.push_str(&piece);
        }
        if has_word || !split {
            words.push(cur);
        }
        Ok(words)
    }

    /// One lexical unit: a quoted string, a substitution, an escaped or plain
    /// character.
    fn unit(&mut self) -> Result<String, LexError> {
        let Some(c) = self.next() else {
            return Ok(String::new());
        };
        match c {
            '\'' => self.single_quoted(),
            '"' => self.double_quoted(),
            '$' => self.dollar(),
            c if c == self.escape => match self.next() {
                Some(n) => Ok(n.to_string()),
                None => Ok(String::new()),
            },
            c => Ok(c.to_string()),
        }
    }

    fn single_quoted(&mut self) -> Result<String, LexError> {
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err(LexError::UnterminatedQuote(self.src.to_string())),
                Some('\'') => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quoted(&mut self) -> Result<String, LexError> {
        let mut out = String::new();
        loop {
            match self.next() {
                None => return Err(LexError::UnterminatedQuote(self.src.to_string())),
                Some('"') => return Ok(out),
                Some('$') => out.push_str(&self.dollar()?),
                Some(c) if c == self.escape => match self.peek() {
                    Some(n) if n == '"' || n == '$' || n == self.escape => {
                        self.pos += 1;
                        out.push(n);
                    }
                    _ => out.push(c),
                },
                Some(c) => out.push(c),
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        name
    }

    fn dollar(&mut self) -> Result<String, LexError> {
        if self.peek() != Some('{') {
            let name = self.name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(self.vars.get(&name).cloned().unwrap_or_default());
        }
        self.pos += 1;
        let name = self.name();
        if name.is_empty() {
            return Err(LexError::BadSubstitution(self.src.to_string()));
        }
        let value = self.vars.get(&name);
        match self.next() {
            Some('}') => Ok(value.cloned().unwrap_or_default()),
            None => Err(LexError::UnterminatedBrace(self.src.to_string())),
            Some(':') => {
                let op = self
                    .next()
                    .ok_or_else(|| LexError::UnterminatedBrace(self.src.to_string()))?;
                if !matches!(op, '-' | '+' | '?') {
                    return Err(LexError::BadSubstitution(self.src.to_string()));
                }
                let word = self.nested_word()?;
                let set = value.is_some_and(|v| !v.is_empty());
                self.apply(op, set, &name, value, word)
            }
            Some(op @ ('-' | '+' | '?')) => {
                let word = self.nested_word()?;
                self.apply(op, value.is_some(), &name, value, word)
            }
            Some(_) => Err(LexError::BadSubstitution(self.src.to_string())),
        }
    }

    fn apply(
        &self,
        op: char,
        set: bool,
        name: &str,
        value: Option<&String>,
        word: String,
    ) -> Result<String, LexError> {
        match op {
            '-' if set => Ok(value.cloned().unwrap_or_default()),
            '-' => Ok(word),
            '+' if set => Ok(word),
            '+' => Ok(String::new()),
            _ if set => Ok(value.cloned().unwrap_or_default()),
            _ => Err(LexError::Required {
                name: name.to_string(),
                message: if word.is_empty() {
                    "is not set".to_string()
                } else {
                    word
                },
            }),
        }
    }

    /// The word of `${X:-word}` up to the closing brace, itself expanded.
    fn nested_word(&mut self) -> Result<String, LexError> {
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(LexError::UnterminatedBrace(self.src.to_string())),
                Some('}') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(_) => out.push_str(&self.unit()?),
            }
        }
    }
}

/// Splits raw arguments into words on unquoted whitespace, keeping quotes
/// and escapes in the words (Docker's parseWords): the words are expanded
/// later, when the variables are known.
pub fn split_raw(line: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                cur.push(c);
            }
            Some(q) if c == q => {
                quote = None;
                cur.push(c);
            }
            _ if c == escape && quote != Some('\'') => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        [("A", "alpha"), ("E", ""), ("P", "/usr/bin")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn w(s: &str) -> String {
        process_word(s, &vars(), '\\').unwrap()
    }

    #[test]
    fn plain_and_braced() {
        assert_eq!(w("$A"), "alpha");
        assert_eq!(w("${A}x"), "alphax");
        assert_eq!(w("$Ax"), "");
        assert_eq!(w("x$"), "x$");
        assert_eq!(w("$UNSET/b"), "/b");
        assert_eq!(w("$P:$A"), "/usr/bin:alpha");
    }

    #[test]
    fn modifiers() {
        assert_eq!(w("${A:-d}"), "alpha");
        assert_eq!(w("${E:-d}"), "d");
        assert_eq!(w("${E-d}"), "");
        assert_eq!(w("${U-d}"), "d");
        assert_eq!(w("${U:-$A-x}"), "alpha-x");
        assert_eq!(w("${A:+alt}"), "alt");
        assert_eq!(w("${E:+alt}"), "");
        assert_eq!(w("${E+alt}"), "alt");
        assert_eq!(w("${U+alt}"), "");
        assert_eq!(w("${A:?boom}"), "alpha");
        assert_eq!(
            process_word("${U:?must be set}", &vars(), '\\'),
            Err(LexError::Required {
                name: "U".into(),
                message: "must be set".into()
            })
        );
        assert!(matches!(
            process_word("${A", &vars(), '\\'),
            Err(LexError::UnterminatedBrace(_))
        ));
        assert!(matches!(
            process_word("${A/x}", &vars(), '\\'),
            Err(LexError::BadSubstitution(_))
        ));
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(w("'$A'"), "$A");
        assert_eq!(w("\"$A b\""), "alpha b");
        assert_eq!(w("\\$A"), "$A");
        assert_eq!(w("\"a\\\"b\""), "a\"b");
        assert_eq!(w("\"a\\nb\""), "a\\nb");
        assert_eq!(process_word("`$A", &vars(), '`').unwrap(), "$A");
        assert!(matches!(
            process_word("'abc", &vars(), '\\'),
            Err(LexError::UnterminatedQuote(_))
        ));
    }

    #[test]
    fn splitting() {
        let v = process_words("a \"b c\" '' $A d\\ e", &vars(), '\\').unwrap();
        assert_eq!(v, vec!["a", "b c", "", "alpha", "d e"]);
        // Variables expand to one word, not split again.
        let mut vs = vars();
        vs.insert("S".into(), "x y".into());
        assert_eq!(process_words("$S", &vs, '\\').unwrap(), vec!["x y"]);
    }

    #[test]
    fn heredoc_bodies_expand_only_variables() {
        assert_eq!(
            process_heredoc("echo \"$A\" '${E:-d}' \\$A\n", &vars(), '\\').unwrap(),
            "echo \"alpha\" 'd' $A\n"
        );
    }

    #[test]
    fn raw_split_keeps_quotes() {
        assert_eq!(
            split_raw("a=\"b c\" d='e f' g\\ h", '\\'),
            vec!["a=\"b c\"", "d='e f'", "g\\ h"]
        );
    }
}
