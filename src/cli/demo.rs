//! `rapport demo`, and the lines both it and `serve --demo` print about the demo. The demo
//! itself (data, sources, key) is [`rapport::demo`].

use rapport::config::Config;
use rapport::demo::{self, Seeded, Webhook};
use rapport::App;

/// Seeds the `default` workspace when empty, adds the demo webhook source once, and prints
/// an admin key alone on stdout.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let base = format!("http://{}", config.addr);
    let app = App::start(config).await?;
    let seeded = demo::seed_default(&app).await?;
    print_seeded(&seeded);
    print_webhook(&base, demo::webhook_source(&app).await?.as_ref());
    println!("{}", seeded.key);
    Ok(())
}

/// Whether the demo data was seeded or the workspace already had some.
pub fn print_seeded(seeded: &Seeded) {
    if seeded.customers > 0 {
        eprintln!(
            "seeded the default workspace with {} demo customers",
            seeded.customers
        );
    } else {
        eprintln!("the default workspace already has data; nothing seeded");
    }
}

/// How to post to the demo webhook source, when it was just made (its secret is shown
/// only then).
pub fn print_webhook(base: &str, webhook: Option<&Webhook>) {
    if let Some(Webhook { id, secret }) = webhook {
        eprintln!(
            "  Demo webhook source {id}: POST {base}/webhooks/{id}\n  signed with Standard Webhooks secret {secret} (shown once)"
        );
    }
}
