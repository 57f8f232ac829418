//! What the pipeline adds to an item's text: its language and a sentiment score.
//!
//! Language comes from whatlang (trigram models, offline) and is kept only when the
//! detection is reliable, as an ISO 639-1 code where one exists. Sentiment is a lexicon
//! score for English and Spanish (with emoji), in [-1, 1]: words and emoji of known
//! polarity are summed, a negation in the two words before one flips it, and the sum is
//! squashed the way VADER normalises (`s / sqrt(s² + 15)`). It is a triage signal for an
//! inbox, not a model; platforms' own language tags win over detection.
//!
//! A workspace may name the languages its customers write in (its `languages` setting):
//! detection then chooses among those only. That is more accurate on short posts, where
//! the full set of about 70 languages often names a neighbour or is unsure (of ten short
//! English support posts, five get no language among all, one among English and
//! German), and cheaper: whatlang scores the trigrams of each candidate language of the
//! text's script. The price: a text in a language not named but written in the script of
//! one that is gets the nearest named language, or none when two named ones are too close
//! to call (a Spanish post in a workspace naming English and German is English, German or
//! none; naming English alone, English); one in another script gets none.

use std::sync::Arc;

use unicode_normalization::UnicodeNormalization;

use crate::error::{Error, Result};

/// The languages detection chooses among: a workspace's `languages` setting, or every
/// language whatlang knows when it names none.
#[derive(Clone, Debug, Default)]
pub struct Languages(Option<Arc<(whatlang::Detector, Vec<whatlang::Lang>)>>);

impl Languages {
    /// Every language whatlang knows.
    pub fn all() -> Languages {
        Languages(None)
    }

    /// The languages of a workspace's setting (codes as [`check_languages`] keeps them;
    /// one this build does not know is left out); none: all.
    pub fn of(codes: &[String]) -> Languages {
        let langs: Vec<whatlang::Lang> = codes.iter().filter_map(|code| lang_of(code)).collect();
        if langs.is_empty() {
            return Languages::all();
        }
        let detector = whatlang::Detector::with_allowlist(langs.clone());
        Languages(Some(Arc::new((detector, langs))))
    }
}

/// The whatlang language `code` names: its ISO 639-1 or ISO 639-3 code, in any case, or
/// the macrolanguage's code whatlang knows one language of (Norwegian `no`/`nor` for
/// Bokmål, Chinese `zho` for Mandarin, Persian `fas` for Iranian Persian).
fn lang_of(code: &str) -> Option<whatlang::Lang> {
    let code = code.trim();
    if code.len() > 3 {
        return None;
    }
    let code = code.to_ascii_lowercase();
    let code = match &code[..] {
        "no" | "nor" => "nob".to_owned(),
        "zho" => "cmn".to_owned(),
        "fas" => "pes".to_owned(),
        _ => code,
    };
    whatlang::Lang::all().iter().copied().find(|lang| {
        let three = lang.code();
        three == code || iso_639_1(three).or_else(|| other_639_1(three)) == Some(&code[..])
    })
}

/// The ISO 639-1 codes of the languages whatlang knows that [`iso_639_1`] does not map
/// (stored under their ISO 639-3 code since before settings named languages; a setting
/// takes either).
fn other_639_1(code: &str) -> Option<&'static str> {
    Some(match code {
        "afr" => "af",
        "aka" => "ak",
        "amh" => "am",
        "aze" => "az",
        "bel" => "be",
        "ben" => "bn",
        "bul" => "bg",
        "cym" => "cy",
        "est" => "et",
        "guj" => "gu",
        "hrv" => "hr",
        "hye" => "hy",
        "jav" => "jv",
        "kan" => "kn",
        "kat" => "ka",
        "khm" => "km",
        "lat" => "la",
        "lav" => "lv",
        "lit" => "lt",
        "mal" => "ml",
        "mar" => "mr",
        "mkd" => "mk",
        "mya" => "my",
        "nep" => "ne",
        "ori" => "or",
        "pan" => "pa",
        "pes" => "fa",
        "sin" => "si",
        "slk" => "sk",
        "slv" => "sl",
        "sna" => "sn",
        "srp" => "sr",
        "tam" => "ta",
        "tel" => "te",
        "tgl" => "tl",
        "tuk" => "tk",
        "urd" => "ur",
        "uzb" => "uz",
        "yid" => "yi",
        "zul" => "zu",
        _ => return None,
    })
}

/// The code [`language`] stores for `lang`: ISO 639-1 for the thirty languages
/// [`iso_639_1`] maps, else ISO 639-3 (as stored before settings named languages).
fn stored_code(lang: whatlang::Lang) -> &'static str {
    iso_639_1(lang.code()).unwrap_or(lang.code())
}

/// The most codes a `languages` setting takes (each language once, by either code).
pub const MAX_LANGUAGE_CODES: usize = 200;

/// A `languages` setting checked (`field` names it, and the index of a refused code, in
/// the error): each the ISO 639-1 or ISO 639-3 code of a language detection knows, kept
/// as [`language`] stores it (ISO 639-1 for the thirty most common, ISO 639-3 for the
/// rest: `"af"` is kept as `"afr"`), sorted, each once. Empty: detection chooses among all.
pub fn check_languages(field: &str, codes: &[String]) -> Result<Vec<String>> {
    if codes.len() > MAX_LANGUAGE_CODES {
        return Err(Error::field(
            field,
            format!("{field} takes at most {MAX_LANGUAGE_CODES} codes"),
        ));
    }
    let mut kept = Vec::with_capacity(codes.len());
    for (index, code) in codes.iter().enumerate() {
        let lang = lang_of(code).ok_or_else(|| {
            let shown: String = code.chars().take(20).collect();
            Error::field(
                format!("{field}[{index}]"),
                format!(
                    "{field}[{index}]: {shown:?} is not a language detection knows (an ISO \
                     639-1 code such as \"en\", \"de\", \"af\", or ISO 639-3 such as \"afr\")"
                ),
            )
        })?;
        kept.push(stored_code(lang).to_owned());
    }
    kept.sort_unstable();
    kept.dedup();
    Ok(kept)
}

/// The language of `text` as an ISO 639-1 code (ISO 639-3 for the languages
/// [`iso_639_1`] does not map), or `None` when the text is too short or ambiguous to tell,
/// or in a script none of `languages` is written in.
pub fn language(text: &str, languages: &Languages) -> Option<String> {
    if text.chars().filter(|c| c.is_alphabetic()).count() < 20 {
        return None;
    }
    let info = match &languages.0 {
        None => whatlang::detect(text)?,
        Some(allowed) => {
            let (detector, langs) = &**allowed;
            // A script of one language (Greek, Korean, Thai, …) is answered by its
            // language whatever the allowlist: one not named is no answer.
            detector
                .detect(text)
                .filter(|info| langs.contains(&info.lang()))?
        }
    };
    // whatlang's own "reliable" flag rejects most sentences under ~80 characters; a
    // confidence of 0.3 keeps short posts while still refusing coin tosses.
    if !info.is_reliable() && info.confidence() < 0.3 {
        return None;
    }
    Some(stored_code(info.lang()).to_owned())
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
        let all = Languages::all();
        assert_eq!(
            language(
                "The export has been broken since Tuesday and nobody answers my tickets",
                &all
            )
            .as_deref(),
            Some("en")
        );
        assert_eq!(
            language(
                "La exportación no funciona desde el martes y nadie contesta mis mensajes",
                &all
            )
            .as_deref(),
            Some("es")
        );
        assert_eq!(language("ok 👍", &all), None);
    }

    #[test]
    fn a_workspace_s_languages_are_the_only_answers() {
        let codes = check_languages("languages", &["EN".into(), "deu".into(), "en".into()]);
        assert_eq!(codes.unwrap(), ["de", "en"]);
        let named = Languages::of(&["de".to_owned(), "en".to_owned()]);
        assert!(Languages::of(&[]).0.is_none());
        let english = "The export has been broken since Tuesday and nobody answers my tickets";
        assert_eq!(language(english, &named).as_deref(), Some("en"));
        // Neither Russian nor Greek is named, nor any language of their scripts: none.
        let russian = "Здравствуйте! Экспорт отчётов не работает уже третий день, \
                       а служба поддержки молчит. Что мне делать?";
        assert_eq!(language(russian, &Languages::all()).as_deref(), Some("ru"));
        assert_eq!(language(russian, &named), None);
        let greek = "Η εξαγωγή δεν λειτουργεί από την Τρίτη και κανείς δεν απαντά";
        assert_eq!(language(greek, &Languages::all()).as_deref(), Some("el"));
        assert_eq!(language(greek, &named), None);
        // A short post the full set gives to a neighbour is told right among the named.
        let short = "awesome support, problem solved in minutes";
        assert_ne!(language(short, &Languages::all()).as_deref(), Some("en"));
        assert_eq!(language(short, &named).as_deref(), Some("en"));
        // A text in a language not named but in a named one's script gets the nearest
        // named one: the workspace said its customers write in these.
        let spanish = "La exportación no funciona desde el martes y nadie contesta mis mensajes";
        assert_eq!(language(spanish, &Languages::all()).as_deref(), Some("es"));
        let only_english = Languages::of(&["en".to_owned()]);
        assert_eq!(language(spanish, &only_english).as_deref(), Some("en"));
        // Codes detection does not know are refused, naming the field and the index.
        let refused = check_languages("languages", &["en".into(), "klingon".into()]);
        let message = refused.unwrap_err().to_string();
        assert!(
            message.contains("languages[1]: \"klingon\" is not a language"),
            "{message}"
        );
        // Every language by its ISO 639-1 code too, kept as interactions show it.
        let both = check_languages("languages", &["af".into(), "afr".into(), "HR".into()]);
        assert_eq!(both.unwrap(), ["afr", "hrv"]);
        let macro_codes = ["no".into(), "nor".into(), "zho".into(), "fas".into()];
        assert_eq!(
            check_languages("languages", &macro_codes).unwrap(),
            ["nb", "pes", "zh"]
        );
        for lang in whatlang::Lang::all() {
            let two = iso_639_1(lang.code()).or_else(|| other_639_1(lang.code()));
            let two = two.unwrap_or_else(|| panic!("{} has no ISO 639-1 code here", lang.code()));
            assert_eq!(lang_of(two), Some(*lang), "{two}");
            assert_eq!(lang_of(lang.code()), Some(*lang));
        }
        let many = vec!["en".to_owned(); MAX_LANGUAGE_CODES + 1];
        assert!(check_languages("languages", &many).is_err());
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
