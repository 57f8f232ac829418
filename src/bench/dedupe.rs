//! The quality of duplicate detection, on a registry generated with known true pairs.
//!
//! People are drawn with names of skewed frequency (a few very common family names, a
//! long tail), so namesakes are frequent as in real registries; each has some of: e-mail
//! addresses, a phone, a birth date, a postal address, an organization. A share of them
//! is entered again, once or twice, the way duplicates come about: a typo (a letter
//! replaced, dropped, added, two swapped), a phonetic spelling, a nickname, given and
//! family names swapped, a part missing or reduced to an initial, the e-mail written with
//! a `+tag` or other dots, or another address altogether, a new phone, a move, a birth date
//! with day and month swapped or a wrong digit, fields left empty. The hard negatives are
//! entered too: relatives (one family name, one address, often one landline, another given
//! name and birth date) and namesakes (the same name, nothing else in common).
//!
//! [`evaluate`] runs the detector's own blocking and comparison ([`domain::dedupe`]) over
//! the records and counts true and false pairs at a threshold. `rapport dedupe --evaluate`
//! prints it; a test holds the floors (precision ≥ 0.97, recall ≥ 0.93 at the default).

use std::collections::HashSet;

use chrono::NaiveDate;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::domain::dedupe::{self, Prepared, Profile};
use entity::CustomerId;

const GIVEN: &[&str] = &[
    "James",
    "Mary",
    "Robert",
    "Patricia",
    "John",
    "Jennifer",
    "Michael",
    "Linda",
    "William",
    "Elizabeth",
    "David",
    "Barbara",
    "Richard",
    "Susan",
    "Joseph",
    "Jessica",
    "Thomas",
    "Sarah",
    "Charles",
    "Karen",
    "Christopher",
    "Nancy",
    "Daniel",
    "Lisa",
    "Matthew",
    "Margaret",
    "Anthony",
    "Sandra",
    "Andrew",
    "Ashley",
    "Steven",
    "Katherine",
    "Paul",
    "Emily",
    "Joshua",
    "Donna",
    "Kenneth",
    "Michelle",
    "Kevin",
    "Carol",
    "Brian",
    "Amanda",
    "George",
    "Melissa",
    "Timothy",
    "Deborah",
    "Ronald",
    "Stephanie",
    "Edward",
    "Rebecca",
    "Jason",
    "Laura",
    "Jeffrey",
    "Sharon",
    "Ryan",
    "Cynthia",
    "Jacob",
    "Kathleen",
    "Gary",
    "Amy",
    "Nicholas",
    "Angela",
    "Eric",
    "Helen",
    "Jonathan",
    "Anna",
    "Stephen",
    "Brenda",
    "Larry",
    "Pamela",
    "Frank",
    "Nicole",
    "Scott",
    "Samantha",
    "Benjamin",
    "Catherine",
    "Samuel",
    "Christine",
    "Gregory",
    "Victoria",
    "Alexander",
    "Rachel",
    "Patrick",
    "Carolyn",
    "Raymond",
    "Janet",
    "Jack",
    "Maria",
    "Dennis",
    "Olivia",
    "Jerry",
    "Heather",
    "Tyler",
    "Diane",
    "Aaron",
    "Julie",
    "Jose",
    "Joyce",
    "Henry",
    "Evelyn",
    "Adam",
    "Joan",
    "Douglas",
    "Victor",
    "Carmen",
    "Lucia",
    "Pablo",
    "Javier",
    "Sofia",
    "Mateo",
    "Valentina",
    "Diego",
    "Camila",
    "Hugo",
    "Lea",
    "Lukas",
    "Mia",
    "Jonas",
    "Hannah",
    "Felix",
    "Emma",
    "Luca",
    "Giulia",
    "Marco",
    "Chiara",
    "Pierre",
    "Camille",
    "Louis",
    "Chloe",
    "Ahmed",
    "Fatima",
    "Yusuf",
    "Aisha",
    "Wei",
    "Mei",
    "Hiroshi",
    "Yuki",
    "Olga",
    "Dmitri",
    "Priya",
    "Arjun",
];

const FAMILY: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Ramirez",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Torres",
    "Nguyen",
    "Hill",
    "Flores",
    "Green",
    "Adams",
    "Nelson",
    "Baker",
    "Hall",
    "Rivera",
    "Campbell",
    "Mitchell",
    "Carter",
    "Roberts",
    "Müller",
    "Schmidt",
    "Schneider",
    "Fischer",
    "Weber",
    "Meyer",
    "Wagner",
    "Becker",
    "Schulz",
    "Hoffmann",
    "Rossi",
    "Russo",
    "Ferrari",
    "Esposito",
    "Bianchi",
    "Romano",
    "Colombo",
    "Dubois",
    "Durand",
    "Lefebvre",
    "Moreau",
    "Laurent",
    "Simon",
    "Michel",
    "Fernández",
    "González",
    "Rodríguez",
    "Sánchez",
    "Pérez",
    "Gómez",
    "Martín",
    "Jiménez",
    "Ruiz",
    "Díaz",
    "Moreno",
    "Muñoz",
    "Álvarez",
    "Romero",
    "Navarro",
    "O'Brien",
    "Murphy",
    "Kelly",
    "Walsh",
    "O'Connor",
    "McCarthy",
    "Kowalski",
    "Nowak",
    "Wiśniewski",
    "Novak",
    "Horvat",
    "Kovač",
    "Popescu",
    "Ionescu",
    "Papadopoulos",
    "Yilmaz",
    "Kaya",
    "Demir",
    "Hansen",
    "Johansson",
    "Andersson",
    "Nielsen",
    "Jensen",
    "Virtanen",
    "Korhonen",
    "Tanaka",
    "Suzuki",
    "Takahashi",
    "Kim",
    "Park",
    "Choi",
    "Chen",
    "Wang",
    "Li",
    "Zhang",
    "Singh",
    "Patel",
    "Kumar",
    "Sharma",
    "Khan",
    "Ali",
    "Hussain",
    "Ivanov",
    "Petrov",
    "Sokolov",
    "Silva",
    "Santos",
    "Oliveira",
    "Pereira",
    "Costa",
    "Ferreira",
    "Almeida",
    "Carvalho",
    "Whitfield",
    "Ashworth",
    "Pemberton",
    "Fairweather",
    "Blackwood",
    "Thistlewood",
    "Kingsley",
    "Hargreaves",
    "Abernathy",
    "Castellanos",
    "Villanueva",
    "Etxeberria",
];

/// Spellings that sound alike, as people write them down from hearing.
const SOUND_ALIKE: &[(&str, &str)] = &[
    ("Katherine", "Catherine"),
    ("Catherine", "Kathryn"),
    ("Steven", "Stephen"),
    ("Sarah", "Sara"),
    ("Jeffrey", "Geoffrey"),
    ("Philip", "Phillip"),
    ("Smith", "Smyth"),
    ("Thompson", "Thomson"),
    ("Meyer", "Maier"),
    ("Schmidt", "Schmitt"),
    ("Jackson", "Jaxon"),
    ("Ashley", "Ashleigh"),
    ("Rebecca", "Rebekah"),
    ("Nicholas", "Nikolas"),
    ("Carol", "Karol"),
    ("Eric", "Erik"),
    ("Olivia", "Olyvia"),
    ("Brian", "Bryan"),
    ("Jonathan", "Johnathan"),
    ("Lee", "Leigh"),
    ("Green", "Greene"),
    ("Martin", "Martyn"),
    ("Allen", "Allan"),
    ("Gary", "Garry"),
    ("Dmitri", "Dmitry"),
    ("Rossi", "Rosi"),
    ("Müller", "Mueller"),
    ("Sokolov", "Sokoloff"),
    ("Mitchell", "Michel"),
];

const NICKS: &[(&str, &str)] = &[
    ("Robert", "Bob"),
    ("William", "Bill"),
    ("James", "Jim"),
    ("Michael", "Mike"),
    ("David", "Dave"),
    ("Daniel", "Dan"),
    ("Thomas", "Tom"),
    ("Christopher", "Chris"),
    ("Matthew", "Matt"),
    ("Nicholas", "Nick"),
    ("Anthony", "Tony"),
    ("Joseph", "Joe"),
    ("Benjamin", "Ben"),
    ("Samuel", "Sam"),
    ("Alexander", "Alex"),
    ("Andrew", "Andy"),
    ("Steven", "Steve"),
    ("Richard", "Rick"),
    ("Edward", "Ed"),
    ("Charles", "Charlie"),
    ("Katherine", "Kate"),
    ("Elizabeth", "Liz"),
    ("Margaret", "Maggie"),
    ("Jennifer", "Jenny"),
    ("Susan", "Sue"),
    ("Patricia", "Patty"),
    ("Rebecca", "Becky"),
    ("Victoria", "Vicky"),
    ("Deborah", "Debbie"),
    ("Jessica", "Jess"),
    ("Timothy", "Tim"),
    ("Kenneth", "Ken"),
    ("Ronald", "Ron"),
    ("Patrick", "Pat"),
    ("Gregory", "Greg"),
    ("Jeffrey", "Jeff"),
    ("Jose", "Pepe"),
    ("Henry", "Harry"),
    ("John", "Jack"),
];

const STREETS: &[&str] = &[
    "High Street",
    "Station Road",
    "Church Lane",
    "Main Street",
    "Park Avenue",
    "Mill Lane",
    "Victoria Road",
    "Green Lane",
    "Manor Road",
    "Kings Road",
    "Calle Mayor",
    "Gran Via",
    "Hauptstrasse",
    "Bahnhofstrasse",
    "Rue de la Paix",
    "Via Roma",
    "Oak Drive",
    "Elm Street",
    "Maple Avenue",
    "Cedar Lane",
    "Queen Street",
    "New Road",
    "School Lane",
];

const PROVIDERS: &[&str] = &[
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "proton.me",
    "gmx.de",
    "web.de",
];

#[derive(Clone)]
struct Person {
    given: String,
    family: String,
    emails: Vec<String>,
    phone: Option<String>,
    birth: Option<NaiveDate>,
    street: Option<String>,
    postal: Option<String>,
    locality: Option<String>,
    organization: Option<String>,
    /// A social handle, for some.
    handle: Option<String>,
}

/// The generated registry: records and the pairs that are one person.
pub struct Registry {
    pub records: Vec<Profile>,
    /// Pairs of record indexes (smaller first) that are the same person.
    pub true_pairs: HashSet<(usize, usize)>,
}

/// Syllables of the long tail of family names: most people in a registry have a name
/// few others share.
const TAIL_START: &[&str] = &[
    "Ash", "Black", "Brook", "Cald", "Dun", "Fair", "Green", "Hart", "Kings", "Lang", "Mar",
    "North", "Pem", "Red", "Stan", "Thorn", "Well", "West", "Wood", "Hol", "Brad", "Crom", "Ever",
    "Gold", "Hazel", "Ivers", "Kel", "Lind", "Mont", "Oster", "Rad", "Sel", "Tal", "Ulm", "Val",
    "Wex", "Yar", "Zell", "Bran", "Cor",
];
const TAIL_MIDDLE: &[&str] = &["", "er", "en", "ing", "al", "o", "an", "el", "is", "ar"];
const TAIL_END: &[&str] = &[
    "ton", "field", "ley", "wood", "worth", "by", "ford", "ham", "stone", "well", "croft", "more",
    "berg", "mann", "ner", "quist", "sen", "ini", "elli", "ez", "ovic", "escu", "akis", "oglu",
    "enko", "ski", "stad", "holm", "dahl", "ridge",
];

/// Draws an index in `0..n` by Zipf's law with exponent `s` (the first much more common).
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut total = 0.0;
        Zipf(
            (1..=n)
                .map(|rank| {
                    total += 1.0 / (rank as f64).powf(s);
                    total
                })
                .collect(),
        )
    }

    fn draw(&self, rng: &mut StdRng) -> usize {
        let x = rng.gen::<f64>() * self.0.last().copied().unwrap_or(1.0);
        self.0.partition_point(|c| *c < x).min(self.0.len() - 1)
    }
}

/// Name frequencies as registries have them: the most common given name about one
/// person in twenty, the most common family name about one in fifty, and two thirds of
/// family names from a long tail (12,000 names, each rare).
struct Names {
    given: Zipf,
    family: Zipf,
}

impl Names {
    fn new() -> Names {
        Names {
            given: Zipf::new(GIVEN.len(), 0.6),
            family: Zipf::new(FAMILY.len(), 0.6),
        }
    }

    fn given(&self, rng: &mut StdRng) -> String {
        GIVEN[self.given.draw(rng)].to_owned()
    }

    fn family(&self, rng: &mut StdRng) -> String {
        if rng.gen_bool(0.35) {
            FAMILY[self.family.draw(rng)].to_owned()
        } else {
            format!(
                "{}{}{}",
                TAIL_START[rng.gen_range(0..TAIL_START.len())],
                TAIL_MIDDLE[rng.gen_range(0..TAIL_MIDDLE.len())],
                TAIL_END[rng.gen_range(0..TAIL_END.len())]
            )
        }
    }
}

fn ascii_local(value: &str) -> String {
    value
        .chars()
        .filter_map(|c| match c {
            'ü' => Some('u'),
            'á' | 'à' => Some('a'),
            'é' | 'è' => Some('e'),
            'í' => Some('i'),
            'ó' => Some('o'),
            'ú' => Some('u'),
            'ñ' => Some('n'),
            'ś' => Some('s'),
            'č' => Some('c'),
            'Á' => Some('a'),
            c if c.is_ascii_alphabetic() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

fn new_person(rng: &mut StdRng, names: &Names, taken: &mut HashSet<String>, n: usize) -> Person {
    let given = names.given(rng);
    let family = names.family(rng);
    let mut person = Person {
        emails: Vec::new(),
        phone: rng.gen_bool(0.6).then(|| phone(rng)),
        birth: rng.gen_bool(0.6).then(|| {
            NaiveDate::from_ymd_opt(
                rng.gen_range(1940..2006),
                rng.gen_range(1..=12),
                rng.gen_range(1..=28),
            )
            .expect("a real date")
        }),
        street: None,
        postal: None,
        locality: None,
        organization: rng
            .gen_bool(0.4)
            .then(|| format!("org-{}", rng.gen_range(0..300))),
        handle: None,
        given,
        family,
    };
    if rng.gen_bool(0.3) {
        let (g, f) = (ascii_local(&person.given), ascii_local(&person.family));
        person.handle = Some(match rng.gen_range(0..3) {
            0 => format!("{g}{f}"),
            1 => format!("{g}_{}{}", &f[..f.len().min(3)], n % 100),
            _ => format!("{}{f}{}", &g[..g.len().min(1)], n % 1000),
        });
    }
    if rng.gen_bool(0.9) {
        person
            .emails
            .push(email_of(rng, taken, &person.given, &person.family, n));
    }
    if rng.gen_bool(0.6) {
        move_house(rng, &mut person);
    }
    person
}

fn phone(rng: &mut StdRng) -> String {
    format!(
        "+{}{}",
        ["44", "34", "49", "33", "1"][rng.gen_range(0..5)],
        rng.gen_range(200_000_000u64..999_999_999)
    )
}

/// An address of the person's name at a provider or employer; a mailbox has one owner,
/// so a taken address gets a number, as providers make people do.
fn email_of(
    rng: &mut StdRng,
    taken: &mut HashSet<String>,
    given: &str,
    family: &str,
    n: usize,
) -> String {
    let (g, f) = (ascii_local(given), ascii_local(family));
    let local = match rng.gen_range(0..5) {
        0 => format!("{g}.{f}"),
        1 => format!("{}{f}", &g[..1.min(g.len())]),
        2 => format!("{g}{f}{}", n % 100),
        3 => format!("{g}_{f}"),
        _ => format!("{f}.{g}{}", n % 1000),
    };
    let domain = if rng.gen_bool(0.3) {
        format!("company{}.example", rng.gen_range(0..200))
    } else {
        PROVIDERS[rng.gen_range(0..PROVIDERS.len())].to_owned()
    };
    let mut address = format!("{local}@{domain}");
    let mut suffix = 2;
    while !taken.insert(address.clone()) {
        address = format!("{local}{suffix}@{domain}");
        suffix += 1;
    }
    address
}

fn move_house(rng: &mut StdRng, person: &mut Person) {
    person.street = Some(format!(
        "{} {}",
        rng.gen_range(1..200),
        STREETS[rng.gen_range(0..STREETS.len())]
    ));
    person.postal = Some(format!("{:05}", rng.gen_range(1_000..99_999)));
    person.locality = Some(format!("Town {}", rng.gen_range(0..400)));
}

/// One typo: a letter replaced, dropped, doubled or two neighbours swapped, rarely the
/// first.
fn typo(rng: &mut StdRng, value: &str) -> String {
    let mut chars: Vec<char> = value.chars().collect();
    if chars.len() < 3 {
        return value.to_owned();
    }
    let at = if rng.gen_bool(0.9) {
        rng.gen_range(1..chars.len())
    } else {
        0
    };
    match rng.gen_range(0..4) {
        0 => {
            chars[at] = (b'a' + rng.gen_range(0..26)) as char;
        }
        1 => {
            chars.remove(at);
        }
        2 => chars.insert(at, chars[at]),
        _ if at + 1 < chars.len() => chars.swap(at, at + 1),
        _ => chars.swap(at - 1, at),
    }
    chars.into_iter().collect()
}

fn variant<'a>(table: &'a [(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    table.iter().find_map(|(x, y)| {
        if *x == name {
            Some(*y)
        } else if *y == name {
            Some(*x)
        } else {
            None
        }
    })
}

/// A second record of `p`, entered by someone else, later.
fn duplicate_of(rng: &mut StdRng, taken: &mut HashSet<String>, p: &Person, n: usize) -> Person {
    let mut d = p.clone();
    let edits = rng.gen_range(1..=3);
    for _ in 0..edits {
        match rng.gen_range(0..13) {
            0 | 1 => d.family = typo(rng, &d.family),
            2 => d.given = typo(rng, &d.given),
            3 => {
                if let Some(v) =
                    variant(SOUND_ALIKE, &d.given).or_else(|| variant(SOUND_ALIKE, &d.family))
                {
                    if variant(SOUND_ALIKE, &d.given).is_some() {
                        d.given = v.to_owned();
                    } else {
                        d.family = v.to_owned();
                    }
                } else {
                    d.given = typo(rng, &d.given);
                }
            }
            4 => {
                if let Some(nick) = NICKS
                    .iter()
                    .find(|(formal, _)| *formal == d.given)
                    .map(|(_, n)| *n)
                {
                    d.given = nick.to_owned();
                }
            }
            5 => std::mem::swap(&mut d.given, &mut d.family),
            6 => d.given = d.given.chars().take(1).collect(),
            7 => {
                // The e-mail written another way: a tag, other dots, or a new address.
                if let Some(first) = d.emails.first().cloned() {
                    let (local, domain) = first.split_once('@').unwrap_or((&first, "example.org"));
                    d.emails = vec![match rng.gen_range(0..4) {
                        0 => format!("{local}+shop@{domain}"),
                        1 if domain == "gmail.com" => {
                            format!("{}@{domain}", local.replace('.', ""))
                        }
                        2 => {
                            let elsewhere =
                                format!("{local}@{}", PROVIDERS[rng.gen_range(0..PROVIDERS.len())]);
                            if taken.insert(elsewhere.clone()) {
                                elsewhere
                            } else {
                                first.clone()
                            }
                        }
                        _ => email_of(rng, taken, &d.given, &d.family, n + 7),
                    }];
                }
            }
            8 => d.phone = rng.gen_bool(0.5).then(|| phone(rng)),
            9 => move_house(rng, &mut d),
            10 => {
                if let Some(date) = d.birth {
                    use chrono::Datelike;
                    d.birth = if date.day() <= 12 && rng.gen_bool(0.5) {
                        NaiveDate::from_ymd_opt(date.year(), date.day(), date.month())
                    } else {
                        let text = date.to_string();
                        let mut chars: Vec<char> = text.chars().collect();
                        let at = [3usize, 6, 8, 9][rng.gen_range(0..4)];
                        chars[at] = char::from(b'0' + rng.gen_range(0..10));
                        NaiveDate::parse_from_str(
                            &chars.into_iter().collect::<String>(),
                            "%Y-%m-%d",
                        )
                        .ok()
                        .or(Some(date))
                    };
                }
            }
            11 => d.organization = None,
            _ => {
                if let Some(street) = &d.street {
                    d.street = Some(
                        street
                            .replace("Street", "St")
                            .replace("Road", "Rd")
                            .replace("Avenue", "Ave"),
                    );
                }
            }
        }
    }
    // The second record was entered with less care: each field kept or not.
    if rng.gen_bool(0.15) {
        d.emails.clear();
    }
    if rng.gen_bool(0.15) {
        d.phone = None;
    }
    if rng.gen_bool(0.15) {
        d.birth = None;
    }
    if rng.gen_bool(0.15) {
        d.street = None;
        d.postal = None;
        d.locality = None;
    }
    d
}

/// A second record that is a social author: the name as shown on the platform (no given
/// or family name), a handle (the same one as on another platform when the person has
/// one), nothing else.
fn social(rng: &mut StdRng, p: &Person, n: usize) -> Profile {
    let shown = if rng.gen_bool(0.3) {
        format!("{} {}", p.given, typo(rng, &p.family))
    } else {
        format!("{} {}", p.given, p.family)
    };
    let handle = match &p.handle {
        Some(handle) if rng.gen_bool(0.6) => handle.clone(),
        _ => format!("{}{}", ascii_local(&p.given), n % 997),
    };
    Profile {
        handles: vec![("bluesky".to_owned(), format!("{handle}.bsky.social"))],
        ..Profile::new(CustomerId::new(), shown)
    }
}

fn record(p: &Person) -> Profile {
    Profile {
        id: CustomerId::new(),
        display_name: format!("{} {}", p.given, p.family),
        given_name: Some(p.given.clone()),
        family_name: Some(p.family.clone()),
        emails: p.emails.iter().map(|e| e.to_lowercase()).collect(),
        phones: p.phone.iter().cloned().collect(),
        birth_date: p.birth,
        street: p.street.clone(),
        postal_code: p.postal.clone(),
        locality: p.locality.clone(),
        organization: p.organization.clone(),
        handles: p
            .handle
            .iter()
            .map(|h| ("mastodon".to_owned(), format!("@{h}@mastodon.example")))
            .collect(),
    }
}

/// A registry of `people` people (and their duplicates, relatives, twins, fathers and
/// sons, and namesakes).
pub fn generate(people: usize, seed: u64) -> Registry {
    generate_with(people, seed, 0.0)
}

/// [`generate`], with a share of the second records being social authors instead: a
/// name as the platform shows it and a handle, nothing else ([`social`]).
pub fn generate_with(people: usize, seed: u64, social_share: f64) -> Registry {
    let mut rng = StdRng::seed_from_u64(seed);
    let names = Names::new();
    let mut taken = HashSet::new();
    let mut records = Vec::new();
    let mut true_pairs = HashSet::new();
    for n in 0..people {
        let person = new_person(&mut rng, &names, &mut taken, n);
        let first = records.len();
        records.push(record(&person));
        let copies = if rng.gen_bool(0.25) {
            if rng.gen_bool(0.2) {
                2
            } else {
                1
            }
        } else {
            0
        };
        for _ in 0..copies {
            if social_share > 0.0 && rng.gen_bool(social_share) {
                records.push(social(&mut rng, &person, n));
            } else {
                let copy = duplicate_of(&mut rng, &mut taken, &person, n);
                records.push(record(&copy));
            }
        }
        for x in first..records.len() {
            for y in x + 1..records.len() {
                true_pairs.insert((x, y));
            }
        }
        if rng.gen_bool(0.08) {
            // A relative: the family name, the home and often the landline.
            let mut relative = new_person(&mut rng, &names, &mut taken, n + 1);
            relative.family = person.family.clone();
            relative.street = person.street.clone();
            relative.postal = person.postal.clone();
            relative.locality = person.locality.clone();
            if rng.gen_bool(0.5) {
                relative.phone = person.phone.clone();
            }
            if relative.given == person.given {
                relative.given =
                    GIVEN[(GIVEN.iter().position(|g| *g == person.given).unwrap_or(0) + 1)
                        % GIVEN.len()]
                    .to_owned();
            }
            records.push(record(&relative));
        }
        if rng.gen_bool(0.004) {
            // A twin: the family name, the birth date, the home.
            let mut twin = new_person(&mut rng, &names, &mut taken, n + 3);
            twin.family = person.family.clone();
            twin.birth = person.birth;
            twin.street = person.street.clone();
            twin.postal = person.postal.clone();
            twin.locality = person.locality.clone();
            if twin.given == person.given {
                twin.given = GIVEN[(GIVEN.iter().position(|g| *g == person.given).unwrap_or(0)
                    + 7)
                    % GIVEN.len()]
                .to_owned();
            }
            records.push(record(&twin));
        }
        if rng.gen_bool(0.003) {
            // A son of the same name at the same address, "Jr" in his family name or not.
            let mut junior = new_person(&mut rng, &names, &mut taken, n + 4);
            junior.given = person.given.clone();
            junior.family = if rng.gen_bool(0.5) {
                format!("{} Jr", person.family)
            } else {
                person.family.clone()
            };
            junior.street = person.street.clone();
            junior.postal = person.postal.clone();
            junior.locality = person.locality.clone();
            if rng.gen_bool(0.5) {
                junior.phone = person.phone.clone();
            }
            records.push(record(&junior));
        }
        if FAMILY.contains(&person.family.as_str()) && rng.gen_bool(0.05) {
            // A namesake: the same (common) name, nothing else in common.
            let mut namesake = new_person(&mut rng, &names, &mut taken, n + 2);
            namesake.given = person.given.clone();
            namesake.family = person.family.clone();
            records.push(record(&namesake));
        }
    }
    Registry {
        records,
        true_pairs,
    }
}

/// Precision and recall of the detector on a generated registry.
#[derive(Clone, Debug)]
pub struct Quality {
    pub records: usize,
    pub true_pairs: usize,
    pub threshold: f64,
    pub true_positives: usize,
    pub false_positives: usize,
    pub false_negatives: usize,
    pub precision: f64,
    pub recall: f64,
    pub stats: dedupe::PairStats,
}

/// Runs the detector over `registry` and counts at `threshold`.
pub fn evaluate(registry: &Registry, threshold: f64) -> Quality {
    evaluate_at(registry, &[threshold]).remove(0)
}

/// Runs the detector over `registry` once and counts at each of `thresholds`.
pub fn evaluate_at(registry: &Registry, thresholds: &[f64]) -> Vec<Quality> {
    let mut prepared: Vec<Prepared> = registry.records.iter().map(Prepared::of).collect();
    let (found, stats) = dedupe::find_pairs(&mut prepared, &mut |_, _| {});
    thresholds
        .iter()
        .map(|threshold| count(registry, &found, *threshold, stats.clone()))
        .collect()
}

fn count(
    registry: &Registry,
    found: &[(usize, usize, dedupe::Comparison)],
    threshold: f64,
    stats: dedupe::PairStats,
) -> Quality {
    let predicted: HashSet<(usize, usize)> = found
        .iter()
        .filter(|(_, _, c)| c.score() >= threshold)
        .map(|(x, y, _)| (*x.min(y), *x.max(y)))
        .collect();
    let true_positives = predicted.intersection(&registry.true_pairs).count();
    let false_positives = predicted.len() - true_positives;
    let false_negatives = registry.true_pairs.len() - true_positives;
    Quality {
        records: registry.records.len(),
        true_pairs: registry.true_pairs.len(),
        threshold,
        true_positives,
        false_positives,
        false_negatives,
        precision: true_positives as f64 / predicted.len().max(1) as f64,
        recall: true_positives as f64 / registry.true_pairs.len().max(1) as f64,
        stats,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The floors the issue sets, at the list's default threshold, on a registry of
    /// 20,000 people (about 28,000 records) with known true pairs. The seed is not the
    /// one the weights were looked at with (`rapport dedupe --evaluate` defaults to 7).
    #[test]
    fn duplicate_detection_meets_its_quality_floors() {
        let registry = generate(20_000, 2026);
        let quality = evaluate(&registry, crate::domain::duplicate::DEFAULT_MIN_SCORE);
        println!("{quality:?}");
        if std::env::var_os("RAPPORT_DEDUPE_MISSES").is_some() {
            print_misses(&registry);
        }
        assert!(quality.true_pairs > 4_000, "{quality:?}");
        assert!(quality.precision >= 0.97, "precision {quality:?}");
        assert!(quality.recall >= 0.93, "recall {quality:?}");
    }

    /// Blocking keeps the comparisons near-linear: 100,000 customers, and the pairs
    /// compared are counted (all pairs would be 5·10⁹).
    #[test]
    fn blocking_compares_a_bounded_number_of_pairs_per_customer() {
        let registry = generate(77_000, 11);
        let quality = evaluate(&registry, crate::domain::duplicate::DEFAULT_MIN_SCORE);
        println!("{quality:?}");
        let n = quality.records as u64;
        assert!(n >= 100_000, "{n}");
        assert!(quality.stats.compared < 60 * n, "{:?}", quality.stats);
        assert!(
            quality.stats.compared < n * (n - 1) / 2 / 1_000,
            "{:?}",
            quality.stats
        );
    }

    fn print_misses(registry: &Registry) {
        let mut prepared: Vec<Prepared> = registry.records.iter().map(Prepared::of).collect();
        let (found, _) = dedupe::find_pairs(&mut prepared, &mut |_, _| {});
        let scored: std::collections::HashMap<(usize, usize), f64> = found
            .iter()
            .map(|(x, y, c)| ((*x, *y), c.score()))
            .collect();
        let show = |p: &Profile| {
            format!(
                "{:?} {:?} {:?} {:?} {:?} {:?} {:?}",
                p.given_name,
                p.family_name,
                p.emails,
                p.phones,
                p.birth_date,
                p.street,
                p.postal_code
            )
        };
        let mut misses = 0;
        for (x, y) in &registry.true_pairs {
            let score = scored.get(&(*x, *y)).copied();
            if score.unwrap_or(0.0) < 0.5 && misses < 40 {
                misses += 1;
                println!(
                    "MISS {score:?}\n  {}\n  {}",
                    show(&registry.records[*x]),
                    show(&registry.records[*y])
                );
            }
        }
        let mut false_hits = 0;
        for ((x, y), score) in &scored {
            if *score >= 0.5 && !registry.true_pairs.contains(&(*x, *y)) && false_hits < 40 {
                false_hits += 1;
                let c = dedupe::compare(&prepared[*x], &prepared[*y]);
                println!(
                    "FALSE {score}\n  {}\n  {}\n  {:?}",
                    show(&registry.records[*x]),
                    show(&registry.records[*y]),
                    c.reasons.iter().map(|r| &r.detail).collect::<Vec<_>>()
                );
            }
        }
    }
}
