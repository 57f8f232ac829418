//! What the pipeline adds to an item's text: its language and a sentiment score.
//!
//! Language comes from whatlang (trigram models, offline) and is kept only when the
//! detection is reliable, as an ISO 639-1 code where one exists. Sentiment is a lexicon
//! score for English and Spanish (with emoji), in [-1, 1]: words and emoji of known
//! polarity are summed, a negation in the two words before one flips it, and the sum is
//! squashed the way VADER normalises (`s / sqrt(s² + 15)`). It is a triage signal for an
//! inbox, not a model; platforms' own language tags win over detection.

use unicode_normalization::UnicodeNormalization;

/// The language of `text` as an ISO 639-1 code (ISO 639-3 when there is none), or `None`
/// when the text is too short or ambiguous to tell.
pub fn language(text: &str) -> Option<String> {
    if text.chars().filter(|c| c.is_alphabetic()).count() < 20 {
        return None;
    }
    let info = whatlang::detect(text)?;
    // whatlang's own "reliable" flag rejects most sentences under ~80 characters; a
    // confidence of 0.3 keeps short posts while still refusing coin tosses.
    if !info.is_reliable() && info.confidence() < 0.3 {
        return None;
    }
    let code = info.lang().code();
    Some(iso_639_1(code).unwrap_or(code).to_owned())
}

fn iso_639_1(code: &str) -> Option<&'static str> {
    Some(match code {
        "eng" => "en",
        "spa" => "es",
        "fra" => "fr",
        "deu" => "de",
        "por" => "pt",
        "ita" => "it",
        "nld" => "nl",
        "cat" => "ca",
        "rus" => "ru",
        "ukr" => "uk",
        "pol" => "pl",
        "tur" => "tr",
        "swe" => "sv",
        "dan" => "da",
        "nob" => "nb",
        "fin" => "fi",
        "ces" => "cs",
        "ron" => "ro",
        "hun" => "hu",
        "ell" => "el",
        "jpn" => "ja",
        "kor" => "ko",
        "cmn" => "zh",
        "ara" => "ar",
        "heb" => "he",
        "hin" => "hi",
        "ind" => "id",
        "vie" => "vi",
        "tha" => "th",
        "epo" => "eo",
        _ => return None,
    })
}

const POSITIVE: &[&str] = &[
    // English
    "love",
    "loved",
    "loving",
    "lovely",
    "great",
    "good",
    "awesome",
    "amazing",
    "excellent",
    "fantastic",
    "perfect",
    "thanks",
    "thank",
    "happy",
    "glad",
    "nice",
    "helpful",
    "best",
    "wonderful",
    "brilliant",
    "recommend",
    "enjoy",
    "enjoyed",
    "fast",
    "easy",
    "works",
    "solved",
    "fixed",
    "impressed",
    "cool",
    "superb",
    "delighted",
    // Spanish (accents folded)
    "encanta",
    "encanto",
    "genial",
    "bueno",
    "buena",
    "buenisimo",
    "excelente",
    "gracias",
    "perfecto",
    "perfecta",
    "feliz",
    "contento",
    "contenta",
    "maravilloso",
    "increible",
    "recomiendo",
    "rapido",
    "facil",
    "funciona",
    "resuelto",
    "mejor",
    "amable",
    "util",
];

const NEGATIVE: &[&str] = &[
    // English
    "hate",
    "hated",
    "bad",
    "terrible",
    "awful",
    "horrible",
    "worst",
    "broken",
    "bug",
    "bugs",
    "crash",
    "crashes",
    "crashed",
    "slow",
    "angry",
    "disappointed",
    "disappointing",
    "useless",
    "annoying",
    "refund",
    "cancel",
    "fail",
    "failed",
    "fails",
    "failing",
    "error",
    "errors",
    "problem",
    "problems",
    "issue",
    "unacceptable",
    "poor",
    "scam",
    "down",
    "frustrating",
    "frustrated",
    "wrong",
    // Spanish (accents folded)
    "odio",
    "malo",
    "mala",
    "terrible",
    "horrible",
    "peor",
    "roto",
    "rota",
    "fallo",
    "falla",
    "error",
    "errores",
    "lento",
    "lenta",
    "enfadado",
    "enojado",
    "decepcionado",
    "decepcion",
    "inutil",
    "molesto",
    "reembolso",
    "cancelar",
    "problema",
    "problemas",
    "estafa",
    "pesimo",
    "pesima",
];

const NEGATIONS: &[&str] = &[
    "not", "no", "don't", "dont", "doesn't", "doesnt", "isn't", "isnt", "wasn't", "never", "nunca",
    "ni", "tampoco", "sin",
];

const POSITIVE_EMOJI: &[char] = &[
    '😀', '😃', '😄', '😁', '😊', '🙂', '😍', '🥰', '❤', '👍', '🎉', '🙌', '💯', '⭐',
];
const NEGATIVE_EMOJI: &[char] = &[
    '😠', '😡', '🤬', '😞', '😢', '😭', '👎', '💩', '😤', '😩', '🙁', '☹',
];

/// Folds accents and case: `Canción` → `cancion`.
pub fn fold(text: &str) -> String {
    text.nfd()
        .filter(|c| !('\u{300}'..='\u{36f}').contains(c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// A sentiment score in [-1, 1] (0 when nothing in the text has a polarity), or `None`
/// for a text without words.
pub fn sentiment(text: &str, _language: Option<&str>) -> Option<f64> {
    let folded = fold(text);
    let words: Vec<&str> = folded
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|word| !word.is_empty())
        .collect();
    if words.is_empty() && !text.chars().any(|c| c as u32 > 0x2000) {
        return None;
    }
    let mut score = 0.0f64;
    for (at, word) in words.iter().enumerate() {
        let polarity = if POSITIVE.contains(word) {
            1.0
        } else if NEGATIVE.contains(word) {
            -1.0
        } else {
            continue;
        };
        let negated = words[at.saturating_sub(2)..at]
            .iter()
            .any(|before| NEGATIONS.contains(before));
        score += if negated { -polarity * 0.75 } else { polarity };
    }
    for c in text.chars() {
        if POSITIVE_EMOJI.contains(&c) {
            score += 1.0;
        } else if NEGATIVE_EMOJI.contains(&c) {
            score -= 1.0;
        }
    }
    let shouting = text.matches('!').count().min(3) as f64 * 0.25;
    if score != 0.0 {
        score += score.signum() * shouting;
    }
    Some((score / (score * score + 15.0).sqrt()).clamp(-1.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_are_told_apart() {
        assert_eq!(
            language("The export has been broken since Tuesday and nobody answers my tickets")
                .as_deref(),
            Some("en")
        );
        assert_eq!(
            language("La exportación no funciona desde el martes y nadie contesta mis mensajes")
                .as_deref(),
            Some("es")
        );
        assert_eq!(language("ok 👍"), None);
    }

    #[test]
    fn sentiment_has_the_right_sign() {
        let score = |text| sentiment(text, None).unwrap();
        assert!(score("I love Rapport, support was amazing! Thanks 🎉") > 0.5);
        assert!(score("The app is broken again, terrible and slow 😡") < -0.5);
        assert!(score("¡Me encanta! Muchas gracias, excelente servicio") > 0.3);
        assert!(score("La aplicación es pésima y lenta, quiero un reembolso") < -0.3);
        assert!(score("not good at all") < 0.0);
        assert_eq!(score("The meeting is on Tuesday at 10"), 0.0);
        assert_eq!(sentiment("", None), None);
        assert_eq!(fold("Canción ÁRBOL"), "cancion arbol");
    }
}
