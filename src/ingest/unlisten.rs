//! Sources that stop taking deliveries have what their connector registered at the
//! platform undone ([`connectors::Connector::unlisten`]: Telegram's webhook). Without it
//! the platform keeps POSTing to an address that now answers 404, and a bot's webhook
//! stays in the way of whatever polls that bot next. Deleting and changing a source go
//! through here for that; the domain functions they wrap make no outbound calls.

use std::time::Duration;

use crate::domain::source::SourceChanges;
use crate::domain::{self, Caller};
use crate::error::Result;
use crate::App;
use entity::{source, SourceId};

/// The most the platform is waited for: the source is already deleted or changed, and the
/// caller (a GraphQL mutation) has its own time budget.
const BUDGET: Duration = Duration::from_secs(10);

/// Deletes a source (see [`domain::source::delete`]), then undoes its connector's
/// registration at the platform. A platform that cannot be told is logged, not an error:
/// the source is gone either way.
pub async fn delete(app: &App, caller: &Caller, id: SourceId) -> Result<()> {
    let before = domain::source::get(&app.db, caller, id).await?;
    domain::source::delete(&app.db, caller, id).await?;
    undo(app, &before).await;
    Ok(())
}

/// Changes a source (see [`domain::source::update`]); when a new configuration makes it
/// take no more deliveries (Telegram back in poll mode), the old registration is undone.
pub async fn update(
    app: &App,
    caller: &Caller,
    id: SourceId,
    changes: SourceChanges,
) -> Result<source::Model> {
    let before = match changes.config {
        Some(_) => Some(domain::source::get(&app.db, caller, id).await?),
        None => None,
    };
    let after = domain::source::update(&app.db, caller, id, changes).await?;
    if let Some(before) = before {
        if !listens(app, &after) {
            undo(app, &before).await;
        }
    }
    Ok(after)
}

/// Whether `source` takes deliveries at its webhook address.
fn listens(app: &App, source: &source::Model) -> bool {
    super::connector(source, &app.outbound, app.config.http.public_url.as_deref())
        .is_ok_and(|connector| connector.capabilities().webhook)
}

/// Undoes what the connector of `source` (as it was) registered, when it took deliveries.
async fn undo(app: &App, source: &source::Model) {
    let public_url = app.config.http.public_url.as_deref();
    let Ok(connector) = super::connector(source, &app.outbound, public_url) else {
        return;
    };
    if !connector.capabilities().webhook {
        return;
    }
    let error = match tokio::time::timeout(BUDGET, connector.unlisten()).await {
        Ok(Ok(())) => return,
        Ok(Err(err)) => domain::source::scrub(source, err.to_string()),
        Err(_) => format!("the platform did not answer within {} s", BUDGET.as_secs()),
    };
    tracing::warn!(source = %crate::ids::encode(source.id), %error, "undoing a source's webhook at its platform failed");
}
