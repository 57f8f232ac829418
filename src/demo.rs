//! The demo: data for `rapport serve --demo` and `rapport demo`, a workspace that looks like
//! a real social CRM a few months in, deterministic (a fixed seed) so screenshots and docs
//! stay true; the demo's sources (a webhook, and the feed the server itself serves); and
//! [`seed_uniform`], the fixed shape tests and benchmarks load. It builds rows and calls
//! the domain to write them (`domain::bulk`); the domain never calls it.

use chrono::{Duration, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sea_orm::{ActiveValue::Set, ConnectionTrait, TransactionTrait};

use crate::domain::bulk::{self, Rows};
use crate::domain::{
    self, ContactPointKind, ConversationStatus, DealStage, Direction, InteractionKind,
    LifecycleStage, Priority, Role,
};
use crate::error::Result;
use crate::App;
use connectors::Channel;
use entity::*;

/// The `default` workspace after [`seed_default`]: how many demo customers were created
/// (0 when it already had data) and a new admin key, the only time it can be shown.
pub struct Seeded {
    pub customers: usize,
    pub key: String,
}

/// The demo's webhook source, made by [`webhook_source`]: its public id and its signing
/// secret (shown only once).
pub struct Webhook {
    pub id: String,
    pub secret: String,
}

/// Seeds the `default` workspace (created when missing) with demo data when it has no
/// customers yet, and creates an admin key named `demo` for it.
pub async fn seed_default(app: &App) -> Result<Seeded> {
    let workspace = domain::workspace::ensure(&app.db, "default").await?;
    let customers = seed(&app.db, workspace.id).await?;
    let (_, key) =
        domain::workspace::create_key(&app.db, workspace.id, Role::Admin, "demo").await?;
    Ok(Seeded { customers, key })
}

/// The demo's feed source, reading the feed Rapport itself serves at `/demo/feed.xml`
/// under `base` (`http://host:port`); created once.
pub async fn feed_source(app: &App, base: &str) -> Result<()> {
    let caller = default_owner(app).await?;
    if domain::source::list(&app.db, &caller)
        .await?
        .iter()
        .any(|source| source.name == "Demo community feed")
    {
        return Ok(());
    }
    let new = domain::source::NewSource {
        channel: connectors::Channel::Rss,
        name: "Demo community feed".into(),
        config: serde_json::json!({ "url": format!("{base}/demo/feed.xml") }),
        schedule_secs: Some(60),
    };
    domain::source::create(&app.db, &caller, new).await?;
    Ok(())
}

/// The demo's webhook source, created once; its secret can be shown only then (`None`
/// when it already exists).
pub async fn webhook_source(app: &App) -> Result<Option<Webhook>> {
    use base64::Engine;
    use rand::RngCore;
    let caller = default_owner(app).await?;
    if domain::source::list(&app.db, &caller)
        .await?
        .iter()
        .any(|source| source.name == "Demo contact form")
    {
        return Ok(None);
    }
    let mut key = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut key);
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    let new = domain::source::NewSource {
        channel: connectors::Channel::Webhook,
        name: "Demo contact form".into(),
        config: serde_json::json!({ "secret": secret }),
        schedule_secs: None,
    };
    let source = domain::source::create(&app.db, &caller, new).await?;
    Ok(Some(Webhook {
        id: crate::ids::encode(source.id),
        secret,
    }))
}

/// The demo's sources are made as the owner of `default`, as the command line acts.
async fn default_owner(app: &App) -> Result<domain::Caller> {
    let workspace = domain::workspace::ensure(&app.db, "default").await?;
    Ok(domain::Caller::owner_without_key(workspace.id, "cli"))
}

const GIVEN: &[&str] = &[
    "Ana", "Lucía", "Javier", "Marta", "Diego", "Sofía", "Pablo", "Carmen", "Emma", "Oliver",
    "Amelia", "Noah", "Grace", "Liam", "Chloé", "Hugo", "Léa", "Louis", "Lena", "Jonas", "Mia",
    "Felix", "João", "Beatriz", "Yuki", "Haruto", "Priya", "Arjun", "Fatima", "Omar", "Ingrid",
    "Lars",
];
const FAMILY: &[&str] = &[
    "García",
    "Martínez",
    "López",
    "Sánchez",
    "Romero",
    "Navarro",
    "Smith",
    "Johnson",
    "Brown",
    "Taylor",
    "Wilson",
    "Dubois",
    "Lefèvre",
    "Moreau",
    "Müller",
    "Schmidt",
    "Weber",
    "Silva",
    "Santos",
    "Tanaka",
    "Sato",
    "Sharma",
    "Patel",
    "Haddad",
    "Nilsen",
    "O'Brien",
];
const ORGANIZATIONS: &[(&str, &str)] = &[
    ("Acme Logistics", "acme-logistics.example"),
    ("Brisa Travel", "brisatravel.example"),
    ("Café Norte", "cafenorte.example"),
    ("Helios Energy", "helios-energy.example"),
    ("Kite Studio", "kitestudio.example"),
    ("Lumen Health", "lumenhealth.example"),
    ("Nordlicht GmbH", "nordlicht.example"),
    ("Oceanic Foods", "oceanicfoods.example"),
    ("Pixel & Print", "pixelprint.example"),
    ("Quokka Games", "quokkagames.example"),
    ("Rivera Legal", "riveralegal.example"),
    ("Tessera Bank", "tesserabank.example"),
];
const TAGS: &[&str] = &[
    "vip",
    "beta-tester",
    "churn-risk",
    "partner",
    "newsletter",
    "press",
];

/// Messages by language: (language, inbound texts, outbound replies).
const TEXTS: &[(&str, &[&str], &[&str])] = &[
    (
        "en",
        &[
            "Loving the new dashboard, the export to CSV saved me an hour today!",
            "Is there a way to change the billing e-mail on my account?",
            "The mobile app keeps logging me out since the last update. Any fix coming?",
            "Can you share the roadmap for the API? We want to build on it.",
            "Third time asking: my refund still has not arrived. Really disappointed.",
            "Great talk at the meetup yesterday, the slides were super clear.",
            "Does the team plan support single sign-on with our identity provider?",
            "Your support agent Carmen was fantastic, problem solved in minutes.",
        ],
        &[
            "Thanks so much! Passing this on to the team.",
            "Sorry about that — we have a fix rolling out this week, I'll keep you posted.",
            "You can change it under Settings → Billing. Happy to help if anything is unclear.",
        ],
    ),
    (
        "es",
        &[
            "¡Me encanta la nueva versión! La búsqueda es rapidísima.",
            "¿Alguien sabe cómo exportar los contactos a Excel?",
            "Llevo dos días sin poder entrar en mi cuenta, ¿me ayudáis?",
            "La factura de este mes tiene un importe que no entiendo.",
            "Gracias por la canción del vídeo de lanzamiento, ¡qué buen ambiente!",
            "¿Tenéis previsto abrir oficina en Valencia?",
        ],
        &[
            "¡Gracias por escribirnos! Te lo miramos ahora mismo.",
            "Perdona las molestias, ya está solucionado. ¿Puedes probar de nuevo?",
        ],
    ),
    (
        "fr",
        &[
            "Super produit, mais l'application est un peu lente le matin.",
            "Comment puis-je ajouter un collègue à mon espace de travail ?",
            "Merci pour la réponse rapide hier, tout fonctionne maintenant.",
            "Je n'ai toujours pas reçu ma facture de septembre.",
        ],
        &["Merci pour votre message, nous regardons cela tout de suite."],
    ),
    (
        "de",
        &[
            "Die neue Suchfunktion ist großartig, danke!",
            "Seit dem Update funktioniert der Export nicht mehr.",
            "Gibt es eine Möglichkeit, die Rechnung auf unsere Firma auszustellen?",
        ],
        &["Danke für den Hinweis, wir kümmern uns darum."],
    ),
    (
        "pt",
        &[
            "Adorei a nova integração, muito fácil de configurar!",
            "Não consigo alterar a minha palavra-passe, podem ajudar?",
            "Quando chega a versão em português do painel?",
        ],
        &["Obrigado pelo contacto! Já estamos a verificar."],
    ),
];

const CHANNELS: &[(Channel, InteractionKind)] = &[
    (Channel::Mastodon, InteractionKind::Mention),
    (Channel::Bluesky, InteractionKind::Mention),
    (Channel::Reddit, InteractionKind::Comment),
    (Channel::HackerNews, InteractionKind::Comment),
    (Channel::Email, InteractionKind::Email),
    (Channel::Webhook, InteractionKind::Message),
];

const NOTES: &[&str] = &[
    "Prefers e-mail over calls. Renewal due next quarter.",
    "Met at the Madrid meetup; interested in the API beta.",
    "Escalated a billing issue in the past, handle with care.",
    "Champion inside their company, introduced us to the CTO.",
    "Asked for a discount for a 3-year commitment.",
];

/// Seeds the workspace `workspace_id` when it has no customers yet; returns how many
/// customers were created (0 when it already had data).
pub async fn seed(
    db: &(impl ConnectionTrait + TransactionTrait),
    workspace_id: WorkspaceId,
) -> Result<usize> {
    if bulk::customer_count(db, workspace_id).await? > 0 {
        return Ok(0);
    }
    let mut rng = StdRng::seed_from_u64(20_261_123);
    let now = domain::now();
    let mut data = Rows::default();
    // The inbox's agents, whom half the conversations are assigned to.
    let owner = domain::Caller::owner_without_key(workspace_id, "demo");
    let mut agents = Vec::new();
    for name in ["Carmen", "Liam", "Yuki"] {
        let email = format!("{}@demo.rapport.example", name.to_lowercase());
        let new = domain::user::NewUser {
            name,
            email: &email,
            role: Role::Agent,
        };
        agents.push(domain::user::create(db, &owner, new).await?.id);
    }

    let organizations: Vec<OrganizationId> = ORGANIZATIONS
        .iter()
        .map(|(name, domain)| {
            let id = OrganizationId::new();
            data.organizations.push(organization::ActiveModel {
                id: Set(id),
                workspace_id: Set(workspace_id),
                name: Set((*name).to_owned()),
                domain: Set(Some((*domain).to_owned())),
                custom: Set(serde_json::json!({ "employees": rng.gen_range(5..5_000) })),
                created_at: Set(now - Duration::days(240)),
                updated_at: Set(now - Duration::days(240)),
            });
            id
        })
        .collect();
    let tags: Vec<TagId> = TAGS
        .iter()
        .map(|name| {
            let id = TagId::new();
            data.tags.push(tag::ActiveModel {
                id: Set(id),
                workspace_id: Set(workspace_id),
                name: Set((*name).to_owned()),
                color: Set(None),
                created_at: Set(now - Duration::days(240)),
            });
            id
        })
        .collect();

    let stages = [
        LifecycleStage::Subscriber,
        LifecycleStage::Lead,
        LifecycleStage::Prospect,
        LifecycleStage::Customer,
        LifecycleStage::Advocate,
        LifecycleStage::Churned,
    ];
    let mut interactions = 0;
    let customers = 220;
    for index in 0..customers {
        let given = GIVEN[index % GIVEN.len()];
        let family = FAMILY[(index * 7 + index / GIVEN.len()) % FAMILY.len()];
        let customer_id = CustomerId::new();
        let created = now
            - Duration::days(rng.gen_range(20..240))
            - Duration::minutes(rng.gen_range(0..1_440));
        let slug = format!("{}.{}{}", ascii(given), ascii(family), index);
        let organization = rng
            .gen_bool(0.6)
            .then(|| organizations[rng.gen_range(0..organizations.len())]);
        let mut first_seen = created;
        let mut last_seen = created;

        if index % 10 != 0 {
            point(
                &mut data,
                workspace_id,
                customer_id,
                ContactPointKind::Email,
                &format!("{slug}@mail.example"),
                created,
            );
        }
        if rng.gen_bool(0.4) {
            point(
                &mut data,
                workspace_id,
                customer_id,
                ContactPointKind::Phone,
                &format!("+346{:08}", 10_000_000 + index * 7_919),
                created,
            );
        }
        for tag in tags.iter().filter(|_| rng.gen_bool(0.12)) {
            data.customer_tags.push(customer_tag::ActiveModel {
                customer_id: Set(customer_id),
                tag_id: Set(*tag),
                workspace_id: Set(workspace_id),
                created_at: Set(created),
            });
        }

        let mut channels: Vec<(Channel, InteractionKind)> = CHANNELS.to_vec();
        channels.shuffle(&mut rng);
        channels.truncate(rng.gen_range(2..=4));
        let mut identities = Vec::new();
        for (channel, _) in &channels {
            let identity_id = IdentityId::new();
            let handle = match *channel {
                Channel::Mastodon => format!("@{slug}@social.example"),
                Channel::Bluesky => format!("{slug}.bsky.example"),
                Channel::Email => format!("{slug}@mail.example"),
                _ => slug.clone(),
            };
            data.identities.push(identity::ActiveModel {
                id: Set(identity_id),
                workspace_id: Set(workspace_id),
                customer_id: Set(customer_id),
                channel: Set(*channel),
                platform_id: Set(format!("{channel}:{slug}")),
                handle: Set(Some(handle)),
                display_name: Set(Some(format!("{given} {family}"))),
                profile_url: Set(Some(format!("https://{channel}.example/{slug}"))),
                avatar_url: Set(None),
                profile_key: Set(None),
                created_at: Set(created),
                updated_at: Set(created),
            });
            identities.push(identity_id);
        }

        for conversation_index in 0..rng.gen_range(2..=4) {
            let (channel, kind) = channels[conversation_index % channels.len()];
            let identity = identities[conversation_index % identities.len()];
            let conversation_id = ConversationId::new();
            let (language, inbound, outbound) = TEXTS[rng.gen_range(0..TEXTS.len())];
            let started = created + Duration::hours(rng.gen_range(1..24 * 18));
            let status = [
                ConversationStatus::Open,
                ConversationStatus::Pending,
                ConversationStatus::Resolved,
            ][rng.gen_range(0..3)];
            let mut at = started.min(now);
            let mut first_response = None;
            let messages = rng.gen_range(2..=5);
            for message in 0..messages {
                let direction = if message % 2 == 1 && rng.gen_bool(0.8) {
                    Direction::Outbound
                } else {
                    Direction::Inbound
                };
                let text = match direction {
                    Direction::Inbound => inbound[rng.gen_range(0..inbound.len())],
                    Direction::Outbound => outbound[rng.gen_range(0..outbound.len())],
                };
                if direction == Direction::Outbound && first_response.is_none() {
                    first_response = Some(at);
                }
                let sentiment = if text.contains("disappointed")
                    || text.contains("sin poder")
                    || text.contains("nicht mehr")
                {
                    -0.7
                } else {
                    rng.gen_range(-0.2..0.9)
                };
                let interaction_kind = if direction == Direction::Outbound {
                    InteractionKind::Reply
                } else {
                    kind
                };
                data.interactions.push(interaction::ActiveModel {
                    id: Set(InteractionId::new()),
                    workspace_id: Set(workspace_id),
                    customer_id: Set(Some(customer_id)),
                    conversation_id: Set(Some(conversation_id)),
                    identity_id: Set((direction == Direction::Inbound).then_some(identity)),
                    source_id: Set(None),
                    external_id: Set(None),
                    channel: Set(channel),
                    direction: Set(direction),
                    kind: Set(interaction_kind),
                    subject: Set(
                        (channel == Channel::Email).then(|| "Question about my account".to_owned())
                    ),
                    text: Set(text.to_owned()),
                    html: Set(None),
                    url: Set(Some(format!(
                        "https://{channel}.example/{slug}/{}",
                        data.interactions.len()
                    ))),
                    language: Set(Some(language.to_owned())),
                    sentiment: Set(Some((sentiment * 100.0_f64).round() / 100.0)),
                    occurred_at: Set(at),
                    ingested_at: Set(at),
                    raw: Set(None),
                    delivery_status: Set(None),
                    delivery_error: Set(None),
                    idempotency_key: Set(None),
                    delivery_attempted_at: Set(None),
                });
                interactions += 1;
                first_seen = first_seen.min(at);
                last_seen = last_seen.max(at);
                at = (at + Duration::minutes(rng.gen_range(5..2_000))).min(now);
            }
            let last_message = at.min(now);
            data.conversations.push(conversation::ActiveModel {
                id: Set(conversation_id),
                workspace_id: Set(workspace_id),
                customer_id: Set(Some(customer_id)),
                source_id: Set(None),
                thread_key: Set(None),
                channel: Set(channel),
                subject: Set(None),
                status: Set(status),
                priority: Set([
                    Priority::Low,
                    Priority::Normal,
                    Priority::Normal,
                    Priority::High,
                    Priority::Urgent,
                ][rng.gen_range(0..5)]),
                assignee_id: Set(rng
                    .gen_bool(0.5)
                    .then(|| agents[rng.gen_range(0..agents.len())])),
                snoozed_until: Set(None),
                waiting_since: Set(None),
                spam: Set(false),
                first_response_at: Set(first_response),
                resolved_at: Set((status == ConversationStatus::Resolved).then_some(last_message)),
                last_message_at: Set(last_message),
                created_at: Set(started.min(now)),
                updated_at: Set(last_message),
            });
        }

        if rng.gen_bool(0.3) {
            data.deals.push(deal::ActiveModel {
                id: Set(DealId::new()),
                workspace_id: Set(workspace_id),
                customer_id: Set(Some(customer_id)),
                organization_id: Set(organization),
                title: Set(format!(
                    "{} plan for {given} {family}",
                    ["Team", "Business", "Enterprise"][rng.gen_range(0..3)]
                )),
                amount_minor: Set(Some(rng.gen_range(50..500) * 10_000)),
                currency: Set(["EUR", "USD", "GBP"][rng.gen_range(0..3)].to_owned()),
                stage: Set([
                    DealStage::Qualification,
                    DealStage::Proposal,
                    DealStage::Negotiation,
                    DealStage::Won,
                    DealStage::Lost,
                ][rng.gen_range(0..5)]),
                close_date: Set(Some(
                    (now + Duration::days(rng.gen_range(-60..90))).date_naive(),
                )),
                created_at: Set(created),
                updated_at: Set(created),
            });
        }
        if rng.gen_bool(0.5) {
            data.notes.push(note::ActiveModel {
                id: Set(NoteId::new()),
                workspace_id: Set(workspace_id),
                customer_id: Set(customer_id),
                body: Set(NOTES[rng.gen_range(0..NOTES.len())].to_owned()),
                author: Set("demo".to_owned()),
                created_at: Set(last_seen),
                updated_at: Set(last_seen),
                conversation_id: Set(None),
            });
        }
        data.customers.push(customer::ActiveModel {
            id: Set(customer_id),
            workspace_id: Set(workspace_id),
            display_name: Set(format!("{given} {family}")),
            given_name: Set(Some(given.to_owned())),
            family_name: Set(Some(family.to_owned())),
            lifecycle_stage: Set(stages[rng.gen_range(0..stages.len())]),
            external_id: Set((index % 3 == 0).then(|| format!("crm-{:05}", index + 1))),
            organization_id: Set(organization),
            custom: Set(serde_json::json!({ "plan": (["free", "team", "business"][rng.gen_range(0..3)]), "nps": rng.gen_range(0..=10) })),
            merged_into: Set(None),
            first_seen_at: Set(first_seen),
            last_seen_at: Set(last_seen),
            created_at: Set(created),
            updated_at: Set(last_seen),
            birth_date: Set(None),
            street: Set(None),
            street2: Set(None),
            locality: Set(None),
            region: Set(None),
            postal_code: Set(None),
            country: Set(None),
        });
    }
    tracing::info!(customers, interactions, "seeding demo data");
    data.insert(db, workspace_id).await?;
    Ok(customers)
}

/// Seeds `customers` uniform customers, each with `identities` identities, one open
/// conversation holding `interactions` interactions, a deal, a note and a tag: a fixed
/// shape for tests and benchmarks.
pub async fn seed_uniform(
    db: &impl TransactionTrait,
    workspace_id: WorkspaceId,
    customers: usize,
    identities: usize,
    interactions: usize,
) -> Result<()> {
    let mut data = Rows::default();
    let start = domain::now() - Duration::days(30);
    let organization = OrganizationId::new();
    data.organizations.push(organization::ActiveModel {
        id: Set(organization),
        workspace_id: Set(workspace_id),
        name: Set("Uniform Inc".to_owned()),
        domain: Set(None),
        custom: Set(serde_json::json!({})),
        created_at: Set(start),
        updated_at: Set(start),
    });
    let tag = TagId::new();
    data.tags.push(tag::ActiveModel {
        id: Set(tag),
        workspace_id: Set(workspace_id),
        name: Set("uniform".to_owned()),
        color: Set(None),
        created_at: Set(start),
    });
    for index in 0..customers {
        let customer_id = CustomerId::new();
        let created = start + Duration::minutes(index as i64);
        let conversation_id = ConversationId::new();
        let channels = [
            Channel::Mastodon,
            Channel::Bluesky,
            Channel::Reddit,
            Channel::HackerNews,
            Channel::Email,
            Channel::Webhook,
        ];
        let mut identity_ids = Vec::new();
        for (n, channel) in channels.iter().cycle().take(identities).enumerate() {
            let id = IdentityId::new();
            identity_ids.push(id);
            data.identities.push(identity::ActiveModel {
                id: Set(id),
                workspace_id: Set(workspace_id),
                customer_id: Set(customer_id),
                channel: Set(*channel),
                platform_id: Set(format!("{channel}:u{index}-{n}")),
                handle: Set(Some(format!("u{index}-{n}"))),
                display_name: Set(None),
                profile_url: Set(None),
                avatar_url: Set(None),
                profile_key: Set(None),
                created_at: Set(created),
                updated_at: Set(created),
            });
        }
        for n in 0..interactions {
            let at = created + Duration::hours(n as i64 + 1);
            let channel = channels[n % identities.clamp(1, channels.len())];
            data.interactions.push(interaction::ActiveModel {
                id: Set(InteractionId::new()),
                workspace_id: Set(workspace_id),
                customer_id: Set(Some(customer_id)),
                conversation_id: Set(Some(conversation_id)),
                identity_id: Set(identity_ids.get(n % identities.max(1)).copied()),
                source_id: Set(None),
                external_id: Set(None),
                channel: Set(channel),
                direction: Set(Direction::Inbound),
                kind: Set(InteractionKind::Mention),
                subject: Set(None),
                text: Set(format!("message {n} from customer {index}")),
                html: Set(None),
                url: Set(None),
                language: Set(Some("en".to_owned())),
                sentiment: Set(None),
                occurred_at: Set(at),
                ingested_at: Set(at),
                raw: Set(None),
                delivery_status: Set(None),
                delivery_error: Set(None),
                idempotency_key: Set(None),
                delivery_attempted_at: Set(None),
            });
        }
        let last = created + Duration::hours(interactions as i64);
        data.conversations.push(conversation::ActiveModel {
            id: Set(conversation_id),
            workspace_id: Set(workspace_id),
            customer_id: Set(Some(customer_id)),
            source_id: Set(None),
            thread_key: Set(None),
            channel: Set(channels[0]),
            subject: Set(None),
            status: Set(ConversationStatus::Open),
            priority: Set(Priority::Normal),
            assignee_id: Set(None),
            snoozed_until: Set(None),
            // Every message is the customer's: they have waited since the first.
            waiting_since: Set((interactions > 0).then(|| created + Duration::hours(1))),
            spam: Set(false),
            first_response_at: Set(None),
            resolved_at: Set(None),
            last_message_at: Set(last),
            created_at: Set(created),
            updated_at: Set(last),
        });
        data.deals.push(deal::ActiveModel {
            id: Set(DealId::new()),
            workspace_id: Set(workspace_id),
            customer_id: Set(Some(customer_id)),
            organization_id: Set(Some(organization)),
            title: Set(format!("Deal {index}")),
            amount_minor: Set(Some(100_000)),
            currency: Set("EUR".to_owned()),
            stage: Set(DealStage::Proposal),
            close_date: Set(None),
            created_at: Set(created),
            updated_at: Set(created),
        });
        data.notes.push(note::ActiveModel {
            id: Set(NoteId::new()),
            workspace_id: Set(workspace_id),
            customer_id: Set(customer_id),
            body: Set(format!("note {index}")),
            author: Set("seed".to_owned()),
            created_at: Set(created),
            updated_at: Set(created),
            conversation_id: Set(None),
        });
        data.customer_tags.push(customer_tag::ActiveModel {
            customer_id: Set(customer_id),
            tag_id: Set(tag),
            workspace_id: Set(workspace_id),
            created_at: Set(created),
        });
        point(
            &mut data,
            workspace_id,
            customer_id,
            ContactPointKind::Email,
            &format!("u{index}@uniform.example"),
            created,
        );
        data.customers.push(customer::ActiveModel {
            id: Set(customer_id),
            workspace_id: Set(workspace_id),
            display_name: Set(format!("Uniform {index:05}")),
            given_name: Set(None),
            family_name: Set(None),
            lifecycle_stage: Set(LifecycleStage::Customer),
            external_id: Set(None),
            organization_id: Set(Some(organization)),
            custom: Set(serde_json::json!({})),
            merged_into: Set(None),
            first_seen_at: Set(created),
            last_seen_at: Set(last),
            created_at: Set(created),
            updated_at: Set(last),
            birth_date: Set(None),
            street: Set(None),
            street2: Set(None),
            locality: Set(None),
            region: Set(None),
            postal_code: Set(None),
            country: Set(None),
        });
    }
    data.insert(db, workspace_id).await
}

fn ascii(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            'á' | 'à' | 'ã' => 'a',
            'é' | 'è' => 'e',
            'í' => 'i',
            'ó' | 'ö' => 'o',
            'ú' | 'ü' => 'u',
            'ç' => 'c',
            'ß' => 's',
            c => c.to_ascii_lowercase(),
        })
        .filter(char::is_ascii_alphanumeric)
        .collect()
}

/// A primary contact point of `kind` (e-mail, phone) for a seeded customer.
fn point(
    rows: &mut Rows,
    workspace_id: WorkspaceId,
    customer_id: CustomerId,
    kind: ContactPointKind,
    value: &str,
    created: chrono::DateTime<Utc>,
) {
    rows.points.push(contact_point::ActiveModel {
        id: Set(ContactPointId::new()),
        workspace_id: Set(workspace_id),
        customer_id: Set(customer_id),
        kind: Set(kind),
        value: Set(value.to_owned()),
        normalized: Set(value.to_lowercase()),
        label: Set(None),
        verified: Set(false),
        is_primary: Set(true),
        created_at: Set(created),
    });
}
