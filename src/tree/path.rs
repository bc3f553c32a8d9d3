//! Znode path rules, as ZooKeeper's `PathUtils.validatePath`.

/// Why a path is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    Empty,
    NotAbsolute,
    TrailingSlash,
    NullChar(usize),
    EmptyName(usize),
    Relative(usize),
    InvalidChar(usize),
}

/// Checks a full path. Java validates UTF-16 code units, so every character outside the basic
/// multilingual plane (a surrogate pair in Java) is invalid too.
pub fn validate_path(path: &str) -> Result<(), PathError> {
    // Indexes in errors count characters, as ZooKeeper's do; in ASCII they are the bytes, which
    // spares every write an allocation.
    if path.is_ascii() {
        validate_chars(path.as_bytes())
    } else {
        validate_chars(&path.chars().collect::<Vec<char>>())
    }
}

/// `validate_path` over the path's characters (bytes of ASCII, or chars).
fn validate_chars<C: Copy + Into<char>>(path: &[C]) -> Result<(), PathError> {
    let chars = |i: usize| -> char { path[i].into() };
    let len = path.len();
    if len == 0 {
        return Err(PathError::Empty);
    }
    if chars(0) != '/' {
        return Err(PathError::NotAbsolute);
    }
    if len == 1 {
        return Ok(());
    }
    if chars(len - 1) == '/' {
        return Err(PathError::TrailingSlash);
    }
    for i in 1..len {
        let c = chars(i);
        let last = chars(i - 1);
        let next_is_end = i + 1 == len || chars(i + 1) == '/';
        if c == '\0' {
            return Err(PathError::NullChar(i));
        } else if c == '/' && last == '/' {
            return Err(PathError::EmptyName(i));
        } else if c == '.' && last == '.' {
            if i >= 2 && chars(i - 2) == '/' && next_is_end {
                return Err(PathError::Relative(i));
            }
        } else if c == '.' {
            if last == '/' && next_is_end {
                return Err(PathError::Relative(i));
            }
        } else if ('\u{1}'..='\u{1f}').contains(&c)
            || ('\u{7f}'..='\u{9f}').contains(&c)
            || ('\u{e000}'..='\u{f8ff}').contains(&c)
            || c >= '\u{fff0}'
        {
            return Err(PathError::InvalidChar(i));
        }
    }
    Ok(())
}

/// The parent of `path` as ZooKeeper computes it: everything before the last '/', with the
/// root standing for "". `None` when there is no slash.
pub fn parent(path: &str) -> Option<&str> {
    let i = path.rfind('/')?;
    Some(if i == 0 { "/" } else { &path[..i] })
}

/// The last path component.
pub fn name(path: &str) -> &str {
    match path.rfind('/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// `child` joined under `parent`.
pub fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let ok = [
            "/",
            "/a",
            "/a/b",
            "/ok.name",
            "/..dots",
            "/.hidden",
            "/a.",
            "/\u{d7ff}",
            "/a/..b",
        ];
        let bad = [
            "",
            "a",
            "/a/",
            "//a",
            "/a//b",
            "/.",
            "/..",
            "/a/.",
            "/a/../b",
            "/a\u{1}b",
            "/\u{7f}",
            "/\u{e000}",
            "/\u{fff5}",
            "/\u{1F600}",
            "/a\0b",
            "/a/...x/../c",
        ];
        for p in ok {
            assert_eq!(validate_path(p), Ok(()), "{p:?}");
        }
        for p in bad {
            assert!(validate_path(p).is_err(), "{p:?}");
        }
    }

    #[test]
    fn error_indexes_count_characters() {
        // After a two-byte character the index is the character's, as in ZooKeeper's message.
        assert_eq!(validate_path("/\u{e9}/\u{1}"), Err(PathError::InvalidChar(3)));
        assert_eq!(validate_path("/a/\u{1}"), Err(PathError::InvalidChar(3)));
    }

    proptest::proptest! {
        /// The ASCII fast path decides exactly as the character path, error and index alike.
        #[test]
        fn ascii_fast_path_agrees(p in "[/a.\\x00\\x01\\x7f]{0,12}") {
            let chars: Vec<char> = p.chars().collect();
            proptest::prop_assert_eq!(validate_path(&p), validate_chars(&chars));
        }
    }

    #[test]
    fn parents() {
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/a/"), Some("/a"));
        assert_eq!(parent("/"), Some("/"));
        assert_eq!(parent("a"), None);
        assert_eq!(name("/a/b"), "b");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
    }
}
