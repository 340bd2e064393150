//! The addresses of an address-list header field (RFC 5322 §3.4), for `-t`.

/// The addr-specs of an address-list (RFC 5322 §3.4): comments dropped, display names
/// and group names skipped, source routes (obs-route, §4.4) removed.
pub(super) fn address_list(value: &str) -> Result<Vec<String>, String> {
    let mut specs = Vec::new();
    // The current address with comments dropped, and where its <...> is in it.
    let mut item = String::new();
    let mut angle: Option<(usize, Option<usize>)> = None;
    let mut in_group = false;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        let in_angle = matches!(angle, Some((_, None)));
        match c {
            '"' => {
                item.push(c);
                loop {
                    match chars.next() {
                        Some('\\') => {
                            item.push('\\');
                            item.extend(chars.next());
                        }
                        Some('"') => {
                            item.push('"');
                            break;
                        }
                        Some(c) => item.push(c),
                        None => return Err("a quoted string has no closing quote".into()),
                    }
                }
            }
            '(' => {
                let mut depth = 1;
                while depth > 0 {
                    match chars.next() {
                        Some('\\') => {
                            chars.next();
                        }
                        Some('(') => depth += 1,
                        Some(')') => depth -= 1,
                        Some(_) => {}
                        None => return Err("a comment has no closing parenthesis".into()),
                    }
                }
                // A comment separates what is around it, as white space does.
                item.push(' ');
            }
            '[' => {
                item.push(c);
                loop {
                    match chars.next() {
                        Some(']') => {
                            item.push(']');
                            break;
                        }
                        Some(c) => item.push(c),
                        None => return Err("a domain literal has no closing ]".into()),
                    }
                }
            }
            '<' if !in_angle => {
                if angle.is_some() {
                    return Err(format!(
                        "a second <...> after {:?}: is a comma missing?",
                        item.trim()
                    ));
                }
                angle = Some((item.len(), None));
                item.push(c);
            }
            '>' if in_angle => {
                angle = angle.map(|(open, _)| (open, Some(item.len())));
                item.push(c);
            }
            // The display name of a group, which may list no one at all
            // ("undisclosed-recipients:;").
            ':' if !in_angle => {
                item.clear();
                angle = None;
                in_group = true;
            }
            ';' if !in_angle && in_group => {
                finish(&mut specs, &item, angle)?;
                item.clear();
                angle = None;
                in_group = false;
            }
            ',' if !in_angle => {
                finish(&mut specs, &item, angle)?;
                item.clear();
                angle = None;
            }
            _ => item.push(c),
        }
    }
    if matches!(angle, Some((_, None))) {
        return Err(format!("{:?} has no closing >", item.trim()));
    }
    finish(&mut specs, &item, angle)?;
    Ok(specs)
}

/// Adds the addr-spec of one address of a list, if the item is not empty.
fn finish(
    specs: &mut Vec<String>,
    item: &str,
    angle: Option<(usize, Option<usize>)>,
) -> Result<(), String> {
    let spec = match angle {
        Some((open, Some(close))) => {
            let after = item.get(close + 1..).unwrap_or_default().trim();
            if !after.is_empty() {
                return Err(format!("{after:?} after <...> in {:?}", item.trim()));
            }
            let inner = item.get(open + 1..close).unwrap_or_default();
            // obs-route: "@a,@b:" before the address.
            if inner.trim_start().starts_with('@') {
                inner.rsplit_once(':').map_or(inner, |(_, a)| a)
            } else {
                inner
            }
        }
        _ => item,
    };
    if spec.trim().is_empty() {
        if angle.is_some() {
            return Err(format!("an empty address in {:?}", item.trim()));
        }
        return Ok(());
    }
    specs.push(join_words(spec));
    Ok(())
}

/// An addr-spec with the white space (and comments) around its dots and @ removed, as
/// obs-local-part and obs-domain allow (RFC 5322 §4.4); white space elsewhere stays, for
/// the address check to refuse.
pub(super) fn join_words(spec: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in spec.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                continue;
            }
            _ => {}
        }
        word.push(c);
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut out = String::new();
    for w in words {
        let glued = out.is_empty() || out.ends_with(['.', '@']) || w.starts_with(['.', '@']);
        if !glued {
            out.push(' ');
        }
        out.push_str(&w);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_words_glues_only_around_dots_and_at() {
        assert_eq!(join_words(" a . b @ c . d "), "a.b@c.d");
        assert_eq!(join_words("two words@x"), "two words@x");
        assert_eq!(join_words("\"q u\"@x"), "\"q u\"@x");
    }
}
