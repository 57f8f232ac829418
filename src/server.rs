//! The serve start-up `rapport serve` runs, in the library so tests and the binary share
//! it: bind the address, open and migrate the database ([`App::start`]), seed the demo when
//! asked, then run the HTTP server with the sync scheduler, the search indexer, the
//! snooze timer and the daily data-quality snapshot beside it until a shutdown signal,
//! and let them finish what they are doing.
//!
//! [`Server::start`] does everything up to serving and hands back what the demo made (its
//! admin key is shown only once: the caller prints it); [`Server::run`] serves.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;

use crate::config::Config;
use crate::{demo, App};

/// How to start: what the command line adds to the configuration.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Seed the `default` workspace with demo data if it is empty, make an admin key, and
    /// add the demo's webhook and feed sources (the feed read from this very server).
    pub demo: bool,
}

/// What `--demo` set up, for the caller to show once.
pub struct Demo {
    pub seeded: demo::Seeded,
    /// `None` when the webhook source existed already (its secret cannot be shown again).
    pub webhook: Option<demo::Webhook>,
}

/// A bound, migrated server that has not started serving yet.
pub struct Server {
    app: App,
    listener: tokio::net::TcpListener,
    local: SocketAddr,
    demo: Option<Demo>,
}

impl Server {
    /// Binds `config.addr` (port 0 picks a free one), opens and migrates the database and,
    /// with `options.demo`, seeds the demo. Fails when the address cannot be bound or the
    /// database cannot be opened, migrated or seeded.
    pub async fn start(mut config: Config, options: Options) -> anyhow::Result<Server> {
        let addr = config.addr;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        if options.demo {
            // The demo feed source reads /demo/feed.xml from this very server: allow this
            // address (and port) only, nothing else on the machine.
            config.outbound.allow.push(local.to_string());
        }
        let mut app = App::start(config).await?;
        let demo = if options.demo {
            let seeded = demo::seed_default(&app).await?;
            app.graphiql_key = Some(seeded.key.as_str().into());
            let webhook = demo::webhook_source(&app).await?;
            demo::feed_source(&app, &format!("http://{local}")).await?;
            Some(Demo { seeded, webhook })
        } else {
            None
        };
        Ok(Server {
            app,
            listener,
            local,
            demo,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The shared state the server will serve.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// What `--demo` set up (`None` without it); taken once, as its key is secret.
    pub fn take_demo(&mut self) -> Option<Demo> {
        self.demo.take()
    }

    /// Serves GraphQL until `shutdown` completes, with the sync scheduler (unless
    /// `[sync] enabled = false`) and the search indexer (unless `indexer = false`) running
    /// beside it; then finishes the requests in flight and waits for both to stop.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Server {
            app,
            listener,
            local,
            ..
        } = self;
        tracing::info!(%local, database = %crate::db::redact_url(&app.config.effective_database_url()), "serving GraphQL at http://{local}/graphql");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let scheduler = app.config.sync.enabled.then(|| {
            tokio::spawn(crate::ingest::scheduler::run(
                crate::ingest::sync::Syncer::new(&app),
                stopped,
            ))
        });
        let snooze = tokio::spawn(crate::ingest::snooze::run(app.db.clone(), stop.subscribe()));
        let quality = tokio::spawn(crate::ingest::quality::run(
            app.db.clone(),
            stop.subscribe(),
        ));
        let indexer = app.config.indexer.then(|| {
            tokio::spawn(crate::search::indexer::Indexer::new(&app).run(stop.subscribe()))
        });
        let shutdown = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        crate::http::serve(app, listener, shutdown).await?;
        if let Some(scheduler) = scheduler {
            scheduler.await.ok();
        }
        if let Some(indexer) = indexer {
            indexer.await.ok();
        }
        snooze.await.ok();
        quality.await.ok();
        tracing::info!("stopped");
        Ok(())
    }
}

/// Completes on Ctrl-C or, on Unix, SIGTERM: the binary's shutdown signal for
/// [`Server::run`]. The handlers are installed when this is called, not when the future is
/// first polled: `run` starts the scheduler and the indexer before it polls `shutdown`, and
/// a SIGTERM arriving in between would otherwise kill the process in the middle of a batch
/// instead of stopping it gracefully.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            async fn next(signal: Option<tokio::signal::unix::Signal>) {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            let (terminate, interrupt) = signals;
            tokio::select! {
                () = next(terminate) => {},
                () = next(interrupt) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down: finishing requests in flight");
    }
}
