//! Demo data for `rapport serve --demo`: a workspace that looks like a real social CRM a
//! few months in. Deterministic (a fixed seed), so screenshots and docs stay true.

use chrono::{Duration, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, PaginatorTrait, TransactionTrait};
use uuid::Uuid;

use super::{ConversationStatus, DealStage, Direction, InteractionKind, LifecycleStage, Priority};
use crate::error::Result;
use entity::*;

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

const CHANNELS: &[(&str, &str)] = &[
    ("mastodon", "mention"),
    ("bluesky", "mention"),
    ("reddit", "comment"),
    ("hacker_news", "comment"),
    ("email", "email"),
    ("webhook", "message"),
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
    workspace_id: Uuid,
) -> Result<usize> {
    let existing = super::scoped::<customer::Entity>(workspace_id)
        .count(db)
        .await?;
    if existing > 0 {
        return Ok(0);
    }
    let mut rng = StdRng::seed_from_u64(20_261_123);
    let now = super::now();
    let mut data = Seed::default();

    let organizations: Vec<Uuid> = ORGANIZATIONS
        .iter()
        .map(|(name, domain)| {
            let id = crate::ids::new_id();
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
    let tags: Vec<Uuid> = TAGS
        .iter()
        .map(|name| {
            let id = crate::ids::new_id();
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
        let customer_id = crate::ids::new_id();
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
            data.point(
                workspace_id,
                customer_id,
                "email",
                &format!("{slug}@mail.example"),
                created,
            );
        }
        if rng.gen_bool(0.4) {
            data.point(
                workspace_id,
                customer_id,
                "phone",
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

        let mut channels: Vec<(&str, &str)> = CHANNELS.to_vec();
        channels.shuffle(&mut rng);
        channels.truncate(rng.gen_range(2..=4));
        let mut identities = Vec::new();
        for (channel, _) in &channels {
            let identity_id = crate::ids::new_id();
            let handle = match *channel {
                "mastodon" => format!("@{slug}@social.example"),
                "bluesky" => format!("{slug}.bsky.example"),
                "email" => format!("{slug}@mail.example"),
                _ => slug.clone(),
            };
            data.identities.push(identity::ActiveModel {
                id: Set(identity_id),
                workspace_id: Set(workspace_id),
                customer_id: Set(customer_id),
                channel: Set((*channel).to_owned()),
                platform_id: Set(format!("{channel}:{slug}")),
                handle: Set(Some(handle)),
                display_name: Set(Some(format!("{given} {family}"))),
                profile_url: Set(Some(format!("https://{channel}.example/{slug}"))),
                avatar_url: Set(None),
                created_at: Set(created),
                updated_at: Set(created),
            });
            identities.push(identity_id);
        }

        for conversation_index in 0..rng.gen_range(2..=4) {
            let (channel, kind) = channels[conversation_index % channels.len()];
            let identity = identities[conversation_index % identities.len()];
            let conversation_id = crate::ids::new_id();
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
                    InteractionKind::Reply.as_str()
                } else {
                    kind
                };
                data.interactions.push(interaction::ActiveModel {
                    id: Set(crate::ids::new_id()),
                    workspace_id: Set(workspace_id),
                    customer_id: Set(customer_id),
                    conversation_id: Set(Some(conversation_id)),
                    identity_id: Set((direction == Direction::Inbound).then_some(identity)),
                    source_id: Set(None),
                    external_id: Set(None),
                    channel: Set(channel.to_owned()),
                    direction: Set(direction.as_str().to_owned()),
                    kind: Set(interaction_kind.to_owned()),
                    subject: Set(
                        (channel == "email").then(|| "Question about my account".to_owned())
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
                customer_id: Set(customer_id),
                source_id: Set(None),
                thread_key: Set(None),
                channel: Set(channel.to_owned()),
                subject: Set(None),
                status: Set(status.as_str().to_owned()),
                priority: Set([
                    Priority::Low,
                    Priority::Normal,
                    Priority::Normal,
                    Priority::High,
                    Priority::Urgent,
                ][rng.gen_range(0..5)]
                .as_str()
                .to_owned()),
                assignee: Set(rng
                    .gen_bool(0.5)
                    .then(|| ["carmen", "liam", "yuki"][rng.gen_range(0..3)].to_owned())),
                first_response_at: Set(first_response),
                resolved_at: Set((status == ConversationStatus::Resolved).then_some(last_message)),
                last_message_at: Set(last_message),
                created_at: Set(started.min(now)),
                updated_at: Set(last_message),
            });
        }

        if rng.gen_bool(0.3) {
            data.deals.push(deal::ActiveModel {
                id: Set(crate::ids::new_id()),
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
                ][rng.gen_range(0..5)]
                .as_str()
                .to_owned()),
                close_date: Set(Some(
                    (now + Duration::days(rng.gen_range(-60..90))).date_naive(),
                )),
                created_at: Set(created),
                updated_at: Set(created),
            });
        }
        if rng.gen_bool(0.5) {
            data.notes.push(note::ActiveModel {
                id: Set(crate::ids::new_id()),
                workspace_id: Set(workspace_id),
                customer_id: Set(customer_id),
                body: Set(NOTES[rng.gen_range(0..NOTES.len())].to_owned()),
                author: Set("demo".to_owned()),
                created_at: Set(last_seen),
                updated_at: Set(last_seen),
            });
        }
        data.customers.push(customer::ActiveModel {
            id: Set(customer_id),
            workspace_id: Set(workspace_id),
            display_name: Set(format!("{given} {family}")),
            given_name: Set(Some(given.to_owned())),
            family_name: Set(Some(family.to_owned())),
            lifecycle_stage: Set(stages[rng.gen_range(0..stages.len())].as_str().to_owned()),
            external_id: Set((index % 3 == 0).then(|| format!("crm-{:05}", index + 1))),
            organization_id: Set(organization),
            custom: Set(serde_json::json!({ "plan": (["free", "team", "business"][rng.gen_range(0..3)]), "nps": rng.gen_range(0..=10) })),
            merged_into: Set(None),
            first_seen_at: Set(first_seen),
            last_seen_at: Set(last_seen),
            created_at: Set(created),
            updated_at: Set(last_seen),
        });
    }
    tracing::info!(customers, interactions, "seeding demo data");
    data.write(db, workspace_id).await?;
    Ok(customers)
}

/// Seeds `customers` uniform customers, each with `identities` identities, one open
/// conversation holding `interactions` interactions, a deal, a note and a tag: a fixed
/// shape for tests and benchmarks.
pub async fn seed_uniform(
    db: &impl TransactionTrait,
    workspace_id: Uuid,
    customers: usize,
    identities: usize,
    interactions: usize,
) -> Result<()> {
    let mut data = Seed::default();
    let start = super::now() - Duration::days(30);
    let organization = crate::ids::new_id();
    data.organizations.push(organization::ActiveModel {
        id: Set(organization),
        workspace_id: Set(workspace_id),
        name: Set("Uniform Inc".to_owned()),
        domain: Set(None),
        custom: Set(serde_json::json!({})),
        created_at: Set(start),
        updated_at: Set(start),
    });
    let tag = crate::ids::new_id();
    data.tags.push(tag::ActiveModel {
        id: Set(tag),
        workspace_id: Set(workspace_id),
        name: Set("uniform".to_owned()),
        color: Set(None),
        created_at: Set(start),
    });
    for index in 0..customers {
        let customer_id = crate::ids::new_id();
        let created = start + Duration::minutes(index as i64);
        let conversation_id = crate::ids::new_id();
        let channels = [
            "mastodon",
            "bluesky",
            "reddit",
            "hacker_news",
            "email",
            "webhook",
        ];
        let mut identity_ids = Vec::new();
        for (n, channel) in channels.iter().cycle().take(identities).enumerate() {
            let id = crate::ids::new_id();
            identity_ids.push(id);
            data.identities.push(identity::ActiveModel {
                id: Set(id),
                workspace_id: Set(workspace_id),
                customer_id: Set(customer_id),
                channel: Set((*channel).to_owned()),
                platform_id: Set(format!("{channel}:u{index}-{n}")),
                handle: Set(Some(format!("u{index}-{n}"))),
                display_name: Set(None),
                profile_url: Set(None),
                avatar_url: Set(None),
                created_at: Set(created),
                updated_at: Set(created),
            });
        }
        for n in 0..interactions {
            let at = created + Duration::hours(n as i64 + 1);
            let channel = channels[n % identities.clamp(1, channels.len())];
            data.interactions.push(interaction::ActiveModel {
                id: Set(crate::ids::new_id()),
                workspace_id: Set(workspace_id),
                customer_id: Set(customer_id),
                conversation_id: Set(Some(conversation_id)),
                identity_id: Set(identity_ids.get(n % identities.max(1)).copied()),
                source_id: Set(None),
                external_id: Set(None),
                channel: Set(channel.to_owned()),
                direction: Set(Direction::Inbound.as_str().to_owned()),
                kind: Set(InteractionKind::Mention.as_str().to_owned()),
                subject: Set(None),
                text: Set(format!("message {n} from customer {index}")),
                html: Set(None),
                url: Set(None),
                language: Set(Some("en".to_owned())),
                sentiment: Set(None),
                occurred_at: Set(at),
                ingested_at: Set(at),
                raw: Set(None),
            });
        }
        let last = created + Duration::hours(interactions as i64);
        data.conversations.push(conversation::ActiveModel {
            id: Set(conversation_id),
            workspace_id: Set(workspace_id),
            customer_id: Set(customer_id),
            source_id: Set(None),
            thread_key: Set(None),
            channel: Set(channels[0].to_owned()),
            subject: Set(None),
            status: Set(ConversationStatus::Open.as_str().to_owned()),
            priority: Set(Priority::Normal.as_str().to_owned()),
            assignee: Set(None),
            first_response_at: Set(None),
            resolved_at: Set(None),
            last_message_at: Set(last),
            created_at: Set(created),
            updated_at: Set(last),
        });
        data.deals.push(deal::ActiveModel {
            id: Set(crate::ids::new_id()),
            workspace_id: Set(workspace_id),
            customer_id: Set(Some(customer_id)),
            organization_id: Set(Some(organization)),
            title: Set(format!("Deal {index}")),
            amount_minor: Set(Some(100_000)),
            currency: Set("EUR".to_owned()),
            stage: Set(DealStage::Proposal.as_str().to_owned()),
            close_date: Set(None),
            created_at: Set(created),
            updated_at: Set(created),
        });
        data.notes.push(note::ActiveModel {
            id: Set(crate::ids::new_id()),
            workspace_id: Set(workspace_id),
            customer_id: Set(customer_id),
            body: Set(format!("note {index}")),
            author: Set("seed".to_owned()),
            created_at: Set(created),
            updated_at: Set(created),
        });
        data.customer_tags.push(customer_tag::ActiveModel {
            customer_id: Set(customer_id),
            tag_id: Set(tag),
            workspace_id: Set(workspace_id),
            created_at: Set(created),
        });
        data.point(
            workspace_id,
            customer_id,
            "email",
            &format!("u{index}@uniform.example"),
            created,
        );
        data.customers.push(customer::ActiveModel {
            id: Set(customer_id),
            workspace_id: Set(workspace_id),
            display_name: Set(format!("Uniform {index:05}")),
            given_name: Set(None),
            family_name: Set(None),
            lifecycle_stage: Set(LifecycleStage::Customer.as_str().to_owned()),
            external_id: Set(None),
            organization_id: Set(Some(organization)),
            custom: Set(serde_json::json!({})),
            merged_into: Set(None),
            first_seen_at: Set(created),
            last_seen_at: Set(last),
            created_at: Set(created),
            updated_at: Set(last),
        });
    }
    data.write(db, workspace_id).await
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

#[derive(Default)]
struct Seed {
    organizations: Vec<organization::ActiveModel>,
    tags: Vec<tag::ActiveModel>,
    customers: Vec<customer::ActiveModel>,
    points: Vec<contact_point::ActiveModel>,
    customer_tags: Vec<customer_tag::ActiveModel>,
    identities: Vec<identity::ActiveModel>,
    conversations: Vec<conversation::ActiveModel>,
    interactions: Vec<interaction::ActiveModel>,
    deals: Vec<deal::ActiveModel>,
    notes: Vec<note::ActiveModel>,
}

impl Seed {
    fn point(
        &mut self,
        workspace_id: Uuid,
        customer_id: Uuid,
        kind: &str,
        value: &str,
        created: chrono::DateTime<Utc>,
    ) {
        self.points.push(contact_point::ActiveModel {
            id: Set(crate::ids::new_id()),
            workspace_id: Set(workspace_id),
            customer_id: Set(customer_id),
            kind: Set(kind.to_owned()),
            value: Set(value.to_owned()),
            normalized: Set(value.to_lowercase()),
            label: Set(None),
            verified: Set(false),
            is_primary: Set(true),
            created_at: Set(created),
        });
    }

    async fn write(self, db: &impl TransactionTrait, workspace_id: Uuid) -> Result<()> {
        let txn = db.begin().await?;
        insert_all(&txn, self.organizations).await?;
        insert_all(&txn, self.tags).await?;
        let customer_events = events(&self.customers, |c| {
            (c.id.clone().unwrap(), c.display_name.clone().unwrap())
        });
        insert_all(&txn, self.customers).await?;
        insert_all(&txn, self.points).await?;
        insert_all(&txn, self.customer_tags).await?;
        insert_all(&txn, self.identities).await?;
        let conversation_events = events(&self.conversations, |c| {
            (c.id.clone().unwrap(), c.status.clone().unwrap())
        });
        insert_all(&txn, self.conversations).await?;
        let interaction_events = events(&self.interactions, |i| {
            (i.id.clone().unwrap(), i.channel.clone().unwrap())
        });
        insert_all(&txn, self.interactions).await?;
        let deal_events = events(&self.deals, |d| {
            (d.id.clone().unwrap(), d.title.clone().unwrap())
        });
        insert_all(&txn, self.deals).await?;
        insert_all(&txn, self.notes).await?;
        use crate::domain::event::EventKind;
        for (kind, events) in [
            (EventKind::CustomerCreated, customer_events),
            (EventKind::ConversationCreated, conversation_events),
            (EventKind::InteractionCreated, interaction_events),
            (EventKind::DealCreated, deal_events),
        ] {
            super::event::append_many(&txn, workspace_id, kind, events).await?;
        }
        txn.commit().await?;
        Ok(())
    }
}

/// Events for seeded rows: the id and one telling field (consumers re-read the row).
fn events<A>(rows: &[A], key: impl Fn(&A) -> (Uuid, String)) -> Vec<(Uuid, serde_json::Value)> {
    rows.iter()
        .map(key)
        .map(|(id, summary)| {
            (
                id,
                serde_json::json!({ "id": id, "summary": summary, "seeded": true }),
            )
        })
        .collect()
}

async fn insert_all<A>(db: &impl ConnectionTrait, rows: Vec<A>) -> Result<()>
where
    A: sea_orm::ActiveModelTrait + Send + Clone,
    <A::Entity as EntityTrait>::Model: sea_orm::IntoActiveModel<A>,
{
    for chunk in rows.chunks(200) {
        <A::Entity as EntityTrait>::insert_many(chunk.to_vec())
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}
