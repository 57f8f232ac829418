//! Plain text out of the HTML that feeds, Mastodon and e-mail carry.

/// Converts an HTML fragment to readable plain text: tags dropped (with `script` and
/// `style` content), block elements and `<br>` as line breaks, entities decoded, runs of
/// spaces collapsed.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    let mut skip_until: Option<&'static str> = None;
    while let Some(start) = rest.find('<') {
        if skip_until.is_none() {
            out.push_str(&decode_entities(&rest[..start]));
        }
        let after = &rest[start + 1..];
        let Some(end) = tag_end(after) else {
            // A lone `<`: keep it as text.
            if skip_until.is_none() {
                out.push('<');
            }
            rest = after;
            continue;
        };
        let tag = &after[..end];
        rest = &after[end + 1..];
        if tag.starts_with("!--") {
            continue;
        }
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if let Some(until) = skip_until {
            if closing && name == until {
                skip_until = None;
            }
            continue;
        }
        match name.as_str() {
            "script" if !closing => skip_until = Some("script"),
            "style" if !closing => skip_until = Some("style"),
            "head" if !closing => skip_until = Some("head"),
            "br" => out.push('\n'),
            "p" | "div" | "li" | "tr" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "blockquote"
            | "pre" | "ul" | "ol" | "table" | "section" | "article" | "hr" => out.push('\n'),
            _ => {}
        }
    }
    if skip_until.is_none() {
        out.push_str(&decode_entities(rest));
    }
    tidy(&out)
}

/// The end of a tag, skipping `>` inside quoted attribute values.
fn tag_end(text: &str) -> Option<usize> {
    let mut quote = None;
    for (at, c) in text.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(at),
            (None, '<') => return None,
            _ => {}
        }
    }
    None
}

/// Collapses spaces within lines and blank lines between paragraphs.
fn tidy(text: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() && lines.last().is_none_or(|last| last.is_empty()) {
            continue;
        }
        lines.push(line);
    }
    while lines.last().is_some_and(|last| last.is_empty()) {
        lines.pop();
    }
    lines.join("\n")
}

/// Decodes HTML character references: numeric ones and the common named ones.
pub fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let decoded = after.find(';').filter(|end| *end <= 10).and_then(|end| {
            let name = &after[..end];
            let c = if let Some(hex) = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
            } else if let Some(decimal) = name.strip_prefix('#') {
                decimal.parse().ok().and_then(char::from_u32)
            } else {
                named_entity(name)
            }?;
            Some((c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(if c == '\u{a0}' { ' ' } else { c });
                rest = &after[end + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn named_entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "hellip" => '…',
        "mdash" => '—',
        "ndash" => '–',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "copy" => '©',
        "reg" => '®',
        "euro" => '€',
        "aacute" => 'á',
        "eacute" => 'é',
        "iacute" => 'í',
        "oacute" => 'ó',
        "uacute" => 'ú',
        "ntilde" => 'ñ',
        "uuml" => 'ü',
        "ccedil" => 'ç',
        "iexcl" => '¡',
        "iquest" => '¿',
        _ => return None,
    })
}

/// The links of an HTML fragment: each `<a>` element's `href` and `class` attributes,
/// entities decoded, in document order.
pub fn anchors(html: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut rest = html;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let Some(end) = tag_end(after) else {
            rest = after;
            continue;
        };
        let tag = &after[..end];
        rest = &after[end + 1..];
        let is_anchor = tag
            .split(|c: char| c.is_ascii_whitespace())
            .next()
            .is_some_and(|name| name.eq_ignore_ascii_case("a"));
        if !is_anchor {
            continue;
        }
        if let Some(href) = attribute(tag, "href").filter(|href| !href.is_empty()) {
            found.push((href, attribute(tag, "class").unwrap_or_default()));
        }
    }
    found
}

/// The value of attribute `name` in the text of a start tag (`a href="…" class=x`).
fn attribute(tag: &str, name: &str) -> Option<String> {
    let mut rest = tag;
    while let Some(at) = rest.find('=') {
        let key = rest[..at]
            .rsplit(|c: char| c.is_ascii_whitespace())
            .next()
            .unwrap_or_default();
        let value_text = rest[at + 1..].trim_start();
        let (value, after) = match value_text.chars().next() {
            Some(quote @ ('"' | '\'')) => {
                let inner = &value_text[1..];
                let close = inner.find(quote)?;
                (&inner[..close], &inner[close + 1..])
            }
            _ => {
                let close = value_text
                    .find(|c: char| c.is_ascii_whitespace())
                    .unwrap_or(value_text.len());
                (&value_text[..close], &value_text[close..])
            }
        };
        if key.eq_ignore_ascii_case(name) {
            return Some(decode_entities(value).trim().to_owned());
        }
        rest = after;
    }
    None
}

/// The links written as text: web addresses (`https://…`, `http://…`), e-mail addresses
/// and fediverse handles (`@name@host`), trailing punctuation left out.
pub fn links_in_text(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '(' | ')' | '"' | '\''))
        .map(|word| word.trim_end_matches(['.', ',', ';', ':', '!', '?']))
        .filter(|word| {
            let lower = word.to_ascii_lowercase();
            let web = lower.starts_with("https://") || lower.starts_with("http://");
            let at_count = word.matches('@').count();
            let email = at_count == 1
                && !word.starts_with('@')
                && word
                    .split('@')
                    .nth(1)
                    .is_some_and(|domain| domain.contains('.'));
            let handle = at_count == 2
                && word.starts_with('@')
                && word[1..].split('@').all(|part| !part.is_empty());
            (web && word.len() > 10) || email || handle
        })
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_and_text_links_are_found() {
        let html = r#"<p>Dev at <a href="https://example.com/" rel="nofollow">example</a>, <span class="h-card"><a href='https://mastodon.social/@bob' class="u-url mention">@bob</a></span> <A HREF=https://x.test/a?b=1&amp;c=2>x</A></p>"#;
        assert_eq!(
            anchors(html),
            vec![
                ("https://example.com/".to_owned(), String::new()),
                (
                    "https://mastodon.social/@bob".to_owned(),
                    "u-url mention".to_owned()
                ),
                ("https://x.test/a?b=1&c=2".to_owned(), String::new()),
            ]
        );
        assert_eq!(
            links_in_text("Find me at https://ana.dev. Mail ana@example.com, or @ana@social.example! Not @ana or a@b"),
            vec!["https://ana.dev", "ana@example.com", "@ana@social.example"]
        );
    }

    #[test]
    fn html_becomes_readable_text() {
        assert_eq!(
            html_to_text("<p><span class=\"h-card\"><a href=\"https://x.example/@acme\" class=\"u-url mention\">@<span>acme</span></a></span> the export&nbsp;is broken &amp; slow</p><p>since <b>Tuesday</b></p>"),
            "@acme the export is broken & slow\n\nsince Tuesday"
        );
        assert_eq!(
            html_to_text("<html><head><style>p{}</style><title>x</title></head><body>Hola<br>¿qu&eacute; tal? &#128512; &#x1F600;<script>alert('<b>')</script></body></html>"),
            "Hola\n¿qué tal? 😀 😀"
        );
        assert_eq!(html_to_text("1 < 2 and a & b"), "1 < 2 and a & b");
        assert_eq!(html_to_text("<!-- hidden -->plain"), "plain");
    }
}
