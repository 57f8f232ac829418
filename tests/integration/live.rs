//! Subscriptions at `/graphql/ws` (graphql-transport-ws): authentication in
//! `connection_init`, workspace scoping, replay after a reconnect with the last cursor,
//! events written by another process, the inbox's live counts, and the bounds.

use std::time::Duration;

use chrono::TimeZone;
use connectors::{Author, InboundItem};
use futures_util::{SinkExt, StreamExt};
use rapport::domain::{self, Role};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::backend_test;
use crate::common::TestApp;

/// How long a test waits for a message it expects (a failure, not a measurement).
const WAIT: Duration = Duration::from_secs(20);
/// How long it listens to be sure nothing more comes.
const QUIET: Duration = Duration::from_millis(700);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A graphql-transport-ws client, as the `graphql-ws` library speaks it.
pub(crate) struct Client {
    socket: Socket,
}

impl Client {
    /// Connects without saying anything yet.
    pub(crate) async fn connect(app: &TestApp) -> Client {
        let mut request = format!("ws://{}/graphql/ws", app.addr)
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        let (socket, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            "graphql-transport-ws"
        );
        Client { socket }
    }

    /// Connects and initialises with `key`; panics unless acknowledged.
    pub(crate) async fn open(app: &TestApp, key: &str) -> Client {
        let mut client = Client::connect(app).await;
        client
            .send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {key}") } }))
            .await;
        assert_eq!(client.next().await["type"], "connection_ack");
        client
    }

    pub(crate) async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
    }

    pub(crate) async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// The next protocol message (pings answered), or `{"closed": code}`.
    pub(crate) async fn next(&mut self) -> Value {
        self.next_within(WAIT)
            .await
            .expect("a message within the wait")
    }

    pub(crate) async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(wait, self.socket.next()).await.ok()?;
            match message {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).unwrap();
                    if value["type"] == "ping" {
                        self.send(json!({ "type": "pong" })).await;
                        continue;
                    }
                    return Some(value);
                }
                Some(Ok(Message::Close(frame))) => {
                    return Some(json!({ "closed": frame.map(|f| u16::from(f.code)), }))
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Some(json!({ "closed": null })),
            }
        }
    }

    /// The next `next` message's data for subscription `id`.
    pub(crate) async fn data(&mut self, id: &str) -> Value {
        let message = self.next().await;
        assert_eq!(
            (message["type"].clone(), message["id"].clone()),
            (json!("next"), json!(id)),
            "{message}"
        );
        assert!(message["payload"]["errors"].is_null(), "{message}");
        message["payload"]["data"].clone()
    }

    /// Asserts nothing arrives for a moment.
    pub(crate) async fn quiet(&mut self) {
        if let Some(message) = self.next_within(QUIET).await {
            panic!("expected nothing more, got {message}");
        }
    }
}

const INTERACTIONS: &str = "subscription($after: String, $filter: InteractionReceivedFilter) {
  interactionReceived(after: $after, filter: $filter) { cursor interaction { text direction customer { displayName } } }
}";

const CONVERSATIONS: &str = "subscription($after: String) {
  conversationChanged(after: $after) { cursor change actorName label actor { name } conversation { status assignee { name } customer { displayName } } }
}";

const COUNTS: &str = "subscription { inboxCountsChanged { cursor counts { open pending total } } }";

/// A webhook source of workspace `slug`, through the API.
pub(crate) async fn source(app: &TestApp, key: &str) -> entity::source::Model {
    let input = json!({ "channel": "WEBHOOK", "name": "form", "config": { "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" } });
    let data = app
        .gql(key, "mutation($input: CreateSourceInput!) { createSource(input: $input) { source { id } } }", json!({ "input": input }))
        .await;
    let id: entity::SourceId =
        rapport::ids::decode("id", data["createSource"]["source"]["id"].as_str().unwrap()).unwrap();
    domain::source::for_webhook(&app.app.db, id).await.unwrap()
}

/// A message of `author` in their thread.
fn item(author: &str, id: &str, outbound: bool) -> InboundItem {
    InboundItem {
        external_id: id.into(),
        author: Author {
            platform_id: format!("acct:{author}"),
            display_name: Some(author.into()),
            ..Author::default()
        },
        outbound,
        kind: "mention".into(),
        subject: None,
        text: format!("{author} says {id}"),
        html: None,
        url: None,
        language: None,
        occurred_at: chrono::Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap(),
        thread_key: Some(format!("thread-{author}")),
        in_reply_to: None,
        raw: json!({ "id": id }),
    }
}

async fn ingest(app: &TestApp, source: &entity::source::Model, item: InboundItem) {
    rapport::ingest::ingest(&app.app.db, source, &[item], None, None)
        .await
        .unwrap();
}

/// How many markers [`joined`] and [`stream_joined`] store before giving up (each waits
/// 200 ms for its own).
const MARKER_ROUNDS: usize = 50;

/// Stores a marker in `source`'s workspace: a message of a new author, its text and the
/// author's name a name no other marker of this test binary has (none a prefix of
/// another); answers that name.
async fn store_marker(app: &TestApp, source: &entity::source::Model, outbound: bool) -> String {
    static MARKERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = MARKERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let marker = format!("marker{n:06}");
    ingest(app, source, item(&marker, &marker, outbound)).await;
    marker
}

/// As [`joined`], for one interaction subscription executed in this process (no socket):
/// polls `stream` while markers are stored until it delivers the last one; answers that
/// marker's cursor.
async fn stream_joined(
    app: &TestApp,
    stream: &mut futures_util::stream::BoxStream<'static, async_graphql::Response>,
    source: &entity::source::Model,
) -> String {
    for _ in 0..MARKER_ROUNDS {
        let marker = store_marker(app, source, false).await;
        while let Ok(response) =
            tokio::time::timeout(Duration::from_millis(200), stream.next()).await
        {
            let response = response.expect("the subscription goes on");
            assert!(response.errors.is_empty(), "{:?}", response.errors);
            let data = response.data.into_json().unwrap();
            assert!(
                data.to_string().contains("\"marker"),
                "only markers arrive meanwhile: {data}"
            );
            if data.to_string().contains(&format!("\"{marker}")) {
                return data["interactionReceived"]["cursor"]
                    .as_str()
                    .unwrap()
                    .to_owned();
            }
        }
    }
    panic!("the subscription never joined the feed");
}

/// Waits until each of `subscriptions` on `client` has joined the feed: stores a message
/// of a new author (a new conversation) in `source`'s workspace, again, until every one
/// of them has delivered the last one stored, and reads off all they delivered.
///
/// graphql-transport-ws acknowledges no subscription's start, and a socket's operations
/// run side by side, so the answer to a query sent after a subscription proves nothing:
/// a process's first subscription starts the feed at the log's head, possibly after that
/// answer, and a message stored in between would never arrive. A subscription that
/// delivered one marker delivers every later one, so once each delivered the last, none
/// is still on its way and the test's own messages come next.
pub(crate) async fn joined(
    app: &TestApp,
    client: &mut Client,
    source: &entity::source::Model,
    subscriptions: &[&str],
    outbound: bool,
) {
    for _ in 0..MARKER_ROUNDS {
        let marker = store_marker(app, source, outbound).await;
        let mut delivered = std::collections::HashSet::new();
        while let Some(message) = client.next_within(Duration::from_millis(200)).await {
            assert_eq!(
                message["type"], "next",
                "only markers arrive meanwhile: {message}"
            );
            assert!(message["payload"]["errors"].is_null(), "{message}");
            let id = message["id"].as_str().unwrap().to_owned();
            assert!(
                subscriptions.contains(&id.as_str()),
                "only markers arrive meanwhile: {message}"
            );
            // Its text or its customer's name begins with the marker.
            if message["payload"]
                .to_string()
                .contains(&format!("\"{marker}"))
            {
                delivered.insert(id);
            }
            if delivered.len() == subscriptions.len() {
                return;
            }
        }
    }
    panic!("{subscriptions:?} never joined the feed");
}

backend_test! {
    async fn each_workspace_sees_its_own_events_and_a_reconnect_with_the_last_cursor_misses_and_repeats_nothing(app: TestApp) {
        let acme = app.key_in("acme", Role::Admin).await;
        let globex = app.key_in("globex", Role::Viewer).await;
        let globex_admin = app.key_in("globex", Role::Admin).await;
        let acme_source = source(&app, &acme).await;
        let globex_source = source(&app, &globex_admin).await;

        let mut a = Client::open(&app, &acme).await;
        let mut b = Client::open(&app, &globex).await;
        a.subscribe("i", INTERACTIONS, json!({})).await;
        a.subscribe("c", CONVERSATIONS, json!({})).await;
        b.subscribe("i", INTERACTIONS, json!({})).await;
        joined(&app, &mut a, &acme_source, &["i", "c"], false).await;
        joined(&app, &mut b, &globex_source, &["i"], false).await;

        ingest(&app, &acme_source, item("ana", "1", false)).await;
        ingest(&app, &globex_source, item("bo", "2", false)).await;

        // The interaction and the conversation's creation, in log order, in any order
        // between the two subscriptions.
        let mut seen = Vec::new();
        for _ in 0..2 {
            let message = a.next().await;
            assert_eq!(message["type"], "next", "{message}");
            seen.push((message["id"].as_str().unwrap().to_owned(), message["payload"]["data"].clone()));
        }
        seen.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(seen[0].0, "c");
        assert_eq!(seen[0].1["conversationChanged"]["change"], "CREATED");
        assert_eq!(seen[0].1["conversationChanged"]["conversation"]["status"], "OPEN");
        assert_eq!(seen[1].0, "i");
        assert_eq!(seen[1].1["interactionReceived"]["interaction"]["text"], "ana says 1");
        assert_eq!(seen[1].1["interactionReceived"]["interaction"]["customer"]["displayName"], "ana");
        let data = b.data("i").await;
        assert_eq!(data["interactionReceived"]["interaction"]["text"], "bo says 2", "globex sees its own only");
        let globex_cursor = data["interactionReceived"]["cursor"].as_str().unwrap().to_owned();
        a.quiet().await;
        b.quiet().await;

        // An agent's change arrives with who made it.
        let conversation = app.gql(&acme, "{ inbox { edges { node { id } } } }", json!({})).await["inbox"]["edges"][0]["node"]["id"].clone();
        app.gql(&acme, "mutation($id: ID!) { setConversationStatus(input: { conversationId: $id, status: PENDING }) { conversation { id } } }", json!({ "id": conversation })).await;
        let data = a.data("c").await;
        assert_eq!(data["conversationChanged"]["change"], "STATUS_SET");
        assert_eq!(data["conversationChanged"]["actorName"], "admin-key");
        assert_eq!(data["conversationChanged"]["conversation"]["status"], "PENDING");

        // Stop listening; three messages come meanwhile; come back with the last cursor.
        let last = seen[1].1["interactionReceived"]["cursor"].as_str().unwrap().to_owned();
        drop(a);
        for id in ["3", "4", "5"] {
            ingest(&app, &acme_source, item("ana", id, false)).await;
        }
        let mut a = Client::open(&app, &acme).await;
        a.subscribe("i", INTERACTIONS, json!({ "after": last })).await;
        let mut texts = Vec::new();
        let mut cursor = last.clone();
        for _ in 0..3 {
            let data = a.data("i").await;
            texts.push(data["interactionReceived"]["interaction"]["text"].as_str().unwrap().to_owned());
            let next = data["interactionReceived"]["cursor"].as_str().unwrap().to_owned();
            assert_ne!(next, cursor, "each message its own cursor");
            assert!(next.parse::<i64>().is_err(), "a cursor is opaque, not the log's position: {next}");
            cursor = next;
        }
        assert_eq!(texts, ["ana says 3", "ana says 4", "ana says 5"], "the missed ones, once, in order");
        // Then live, without a repeat.
        ingest(&app, &acme_source, item("ana", "6", false)).await;
        assert_eq!(a.data("i").await["interactionReceived"]["interaction"]["text"], "ana says 6");
        a.quiet().await;

        // A filter: only our own replies.
        a.subscribe("out", INTERACTIONS, json!({ "filter": { "direction": "OUTBOUND" } })).await;
        joined(&app, &mut a, &acme_source, &["i", "out"], true).await;
        ingest(&app, &acme_source, item("ana", "7", false)).await;
        ingest(&app, &acme_source, item("ana", "8", true)).await;
        let mut got = Vec::new();
        for _ in 0..3 {
            let message = a.next().await;
            got.push((message["id"].as_str().unwrap().to_owned(), message["payload"]["data"]["interactionReceived"]["interaction"]["text"].as_str().unwrap().to_owned()));
        }
        got.sort();
        assert_eq!(got, [("i".to_owned(), "ana says 7".to_owned()), ("i".to_owned(), "ana says 8".to_owned()), ("out".to_owned(), "ana says 8".to_owned())]);

        // A cursor is no way into another workspace: acme's is refused in globex, as is a
        // made-up position; globex's own replays globex's events only.
        for made_up in [last.as_str(), "0"] {
            b.subscribe("all", INTERACTIONS, json!({ "after": made_up })).await;
            let message = b.next().await;
            assert_eq!(message["payload"]["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{message}");
            assert_eq!(b.next().await, json!({ "type": "complete", "id": "all" }));
        }
        ingest(&app, &globex_source, item("bo", "9", false)).await;
        ingest(&app, &acme_source, item("ana", "10", false)).await;
        b.subscribe("all", INTERACTIONS, json!({ "after": globex_cursor })).await;
        // The replay from globex's own cursor, and globex's live subscription: bo's message
        // once each, acme's in neither.
        let mut got = Vec::new();
        for _ in 0..2 {
            let message = b.next().await;
            got.push((message["id"].as_str().unwrap().to_owned(), message["payload"]["data"]["interactionReceived"]["interaction"]["text"].as_str().unwrap().to_owned()));
        }
        got.sort();
        assert_eq!(got, [("all".to_owned(), "bo says 9".to_owned()), ("i".to_owned(), "bo says 9".to_owned())]);
        b.quiet().await;
    }
}

backend_test! {
    async fn a_socket_without_a_good_key_in_connection_init_is_refused(app: TestApp) {
        let key = app.key(Role::Viewer).await;
        let cases = [
            (json!({ "type": "connection_init", "payload": { "Authorization": "Bearer rpk_wrong" } }), 4403),
            (json!({ "type": "connection_init", "payload": {} }), 4403),
            (json!({ "type": "connection_init" }), 4403),
            (json!({ "type": "connection_init", "payload": { "Authorization": key.clone() } }), 4403),
            (json!({ "id": "1", "type": "subscribe", "payload": { "query": COUNTS } }), 4401),
        ];
        for (first, code) in cases {
            let mut client = Client::connect(&app).await;
            client.send(first.clone()).await;
            assert_eq!(client.next().await, json!({ "closed": code }), "{first}");
        }
        // The header name in any case, as browsers' clients send it.
        let mut client = Client::connect(&app).await;
        client.send(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {key}") } })).await;
        assert_eq!(client.next().await["type"], "connection_ack");
        // A document over the limits, or not a document, is an error of that operation.
        client.subscribe("bad", "subscription { nope }", json!({})).await;
        let message = client.next().await;
        assert!(message["type"] == "error" || message["payload"]["errors"].is_array(), "{message}");
        assert_eq!(client.next().await, json!({ "type": "complete", "id": "bad" }));
        // A cursor ahead of every event is refused, not silently waited for.
        let caller = domain::workspace::authenticate(&app.app.db, &key).await.unwrap();
        let ahead = app.app.cursors.encode(caller.workspace_id, 999_999_999);
        client.subscribe("ahead", INTERACTIONS, json!({ "after": ahead })).await;
        let message = client.next().await;
        assert_eq!(message["payload"]["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{message}");
        assert_eq!(client.next().await, json!({ "type": "complete", "id": "ahead" }));
        // A key revoked while its socket is open runs nothing more on it.
        domain::workspace::revoke_key(&app.app.db, caller.workspace_id, caller.key_id).await.unwrap();
        client.subscribe("after-revoke", "{ me { id } }", json!({})).await;
        let message = client.next().await;
        assert_eq!(message["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED", "{message}");
        // Plain HTTP at the socket's path is told what it is.
        let response = app.client.get(app.url("/graphql/ws")).send().await.unwrap();
        assert!(response.status().is_client_error());
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    }
}

backend_test! {
    async fn one_address_cannot_take_every_socket(app: TestApp) {
        let limits = rapport::config::Limits { max_connections_per_client: 2, ..Default::default() };
        let app = TestApp::with_config(app.backend, |config| config.limits = limits).await.unwrap();
        let key = app.key(Role::Viewer).await;
        let first = Client::open(&app, &key).await;
        let _second = Client::open(&app, &key).await;
        let mut request = format!("ws://{}/graphql/ws", app.addr).into_client_request().unwrap();
        request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().unwrap());
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 429),
            other => panic!("a third socket from one address: {:?}", other.map(|(_, response)| response.status())),
        }
        // A socket closed gives its place back.
        drop(first);
        let mut opened = None;
        for _ in 0..50 {
            let mut request = format!("ws://{}/graphql/ws", app.addr).into_client_request().unwrap();
            request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().unwrap());
            if let Ok((socket, _)) = tokio_tungstenite::connect_async(request).await {
                opened = Some(socket);
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(opened.is_some(), "the place came back");
    }
}

backend_test! {
    async fn a_silent_socket_is_closed_with_4408_and_a_revoked_key_ends_its_idle_socket(app: TestApp) {
        let limits = rapport::config::Limits { socket_init_timeout_secs: 1, socket_key_recheck_secs: 1, ..Default::default() };
        let app = TestApp::with_config(app.backend, |config| config.limits = limits).await.unwrap();
        // Connected, nothing said: closed as the protocol's initialisation timeout.
        let mut silent = Client::connect(&app).await;
        let started = std::time::Instant::now();
        assert_eq!(silent.next().await, json!({ "closed": 4408 }));
        assert!(started.elapsed() >= Duration::from_millis(900), "not before the timeout");
        // A subscriber that sends nothing more: revoking its key ends the socket at the
        // next look-up, with no operation needed to notice.
        let key = app.key(Role::Viewer).await;
        let mut idle = Client::open(&app, &key).await;
        idle.subscribe("i", INTERACTIONS, json!({})).await;
        idle.quiet().await;
        let caller = domain::workspace::authenticate(&app.app.db, &key).await.unwrap();
        domain::workspace::revoke_key(&app.app.db, caller.workspace_id, caller.key_id).await.unwrap();
        assert_eq!(idle.next().await, json!({ "closed": 4403 }));
    }
}

backend_test! {
    async fn the_inbox_counts_arrive_at_once_and_again_when_a_change_moves_them(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let source = source(&app, &key).await;
        ingest(&app, &source, item("ana", "1", false)).await;
        let mut client = Client::open(&app, &key).await;
        client.subscribe("n", COUNTS, json!({})).await;
        let first = client.data("n").await;
        assert_eq!(first["inboxCountsChanged"]["counts"], json!({ "open": 1, "pending": 0, "total": 1 }));
        ingest(&app, &source, item("bo", "2", false)).await;
        assert_eq!(client.data("n").await["inboxCountsChanged"]["counts"], json!({ "open": 2, "pending": 0, "total": 2 }));
        let conversation = app.gql(&key, "{ inbox(first: 1) { edges { node { id } } } }", json!({})).await["inbox"]["edges"][0]["node"]["id"].clone();
        app.gql(&key, "mutation($id: ID!) { setConversationStatus(input: { conversationId: $id, status: PENDING }) { conversation { id } } }", json!({ "id": conversation })).await;
        assert_eq!(client.data("n").await["inboxCountsChanged"]["counts"], json!({ "open": 1, "pending": 1, "total": 2 }));
        // A change that moves nothing (a priority) sends nothing.
        app.gql(&key, "mutation($id: ID!) { setConversationPriority(input: { conversationId: $id, priority: HIGH }) { conversation { id } } }", json!({ "id": conversation })).await;
        client.quiet().await;

        // Another workspace's first counts carry a cursor of its own position: the same
        // before and after this workspace wrote, so no other tenant's activity shows.
        let other = app.key_in("globex", Role::Viewer).await;
        let mut watcher = Client::open(&app, &other).await;
        watcher.subscribe("n", COUNTS, json!({})).await;
        let first = watcher.data("n").await["inboxCountsChanged"]["cursor"].clone();
        drop(watcher);
        ingest(&app, &source, item("cy", "3", false)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut watcher = Client::open(&app, &other).await;
        watcher.subscribe("n", COUNTS, json!({})).await;
        assert_eq!(watcher.data("n").await["inboxCountsChanged"]["cursor"], first);
        assert_eq!(client.data("n").await["inboxCountsChanged"]["counts"], json!({ "open": 2, "pending": 1, "total": 3 }));
    }
}

backend_test! {
    async fn a_key_holds_a_bounded_number_of_subscriptions_and_a_subscriber_that_falls_behind_is_stopped_with_its_cursor(app: TestApp) {
        // The per-key bound, over the socket.
        let limits = rapport::config::Limits { max_subscriptions_per_key: 2, subscription_backlog: 16, ..Default::default() };
        let app = TestApp::with_config(app.backend, |config| config.limits = limits).await.unwrap();
        let key = app.key(Role::Admin).await;
        let source = source(&app, &key).await;
        let mut client = Client::open(&app, &key).await;
        for id in ["1", "2", "3"] {
            client.subscribe(id, INTERACTIONS, json!({})).await;
        }
        // One of the three (whichever joined last) is refused, and ends.
        let message = client.next().await;
        assert_eq!(message["payload"]["errors"][0]["extensions"]["code"], "BAD_USER_INPUT", "{message}");
        let refused = message["id"].as_str().unwrap().to_owned();
        assert_eq!(client.next().await, json!({ "type": "complete", "id": refused }));
        let kept: Vec<&str> = ["1", "2", "3"].into_iter().filter(|id| *id != refused).collect();
        // Closing one frees its place.
        client.send(json!({ "id": kept[0], "type": "complete" })).await;
        assert_eq!(client.next().await, json!({ "type": "complete", "id": kept[0] }));
        client.subscribe("4", INTERACTIONS, json!({})).await;
        // No error for 4: both it and the one kept deliver the markers.
        joined(&app, &mut client, &source, &[kept[1], "4"], false).await;
        ingest(&app, &source, item("ana", "0", false)).await;
        let mut got = [client.next().await, client.next().await];
        got.sort_by_key(|message| message["id"].as_str().unwrap_or_default().to_owned());
        assert_eq!(got.iter().map(|m| (m["type"].clone(), m["id"].clone())).collect::<Vec<_>>(),
            [(json!("next"), json!(kept[1])), (json!("next"), json!("4"))]);
        client.quiet().await;
        drop(client);

        // A subscriber that does not read while 40 events pass is stopped, with the cursor
        // to go on from; going on from it misses nothing. (A key of its own: the socket
        // just dropped frees its key's places only once the server has seen it close.)
        let key = app.key(Role::Admin).await;
        let caller = domain::workspace::authenticate(&app.app.db, &key).await.unwrap();
        let api = rapport::graphql::Api::new(app.app.clone());
        let request = async_graphql::Request::new(INTERACTIONS);
        let mut stream = rapport::graphql::execute_stream(&api, caller.clone(), request);
        let marker = stream_joined(&app, &mut stream, &source).await;
        for n in 0..40 {
            ingest(&app, &source, item("ana", &format!("l{n}"), false)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut received = Vec::new();
        let error = loop {
            let response = tokio::time::timeout(WAIT, stream.next()).await.unwrap().expect("an answer");
            if let Some(error) = response.errors.first() {
                break error.clone();
            }
            let data = response.data.into_json().unwrap();
            received.push(data["interactionReceived"]["cursor"].as_str().unwrap().to_owned());
        };
        assert!(received.len() < 40, "it fell behind: {}", received.len());
        let code = error.extensions.as_ref().and_then(|e| e.get("code")).cloned();
        assert_eq!(code, Some(async_graphql::Value::from("CONFLICT")), "{error:?}");
        // The cursor to go on from: the last one received (the marker's, when none of the
        // 40 was).
        let last = error.message.split("after: \"").nth(1).and_then(|rest| rest.split('"').next()).unwrap().to_owned();
        assert_eq!(&last, received.last().unwrap_or(&marker));
        let request = async_graphql::Request::new(INTERACTIONS).variables(async_graphql::Variables::from_json(json!({ "after": last })));
        let mut stream = rapport::graphql::execute_stream(&api, caller, request);
        let mut rest = 0;
        while let Ok(Some(response)) = tokio::time::timeout(QUIET, stream.next()).await {
            assert!(response.errors.is_empty(), "{:?}", response.errors);
            rest += 1;
        }
        assert_eq!(received.len() + rest, 40, "every event once across the two subscriptions");

        // Another workspace's burst does not push a subscriber behind: globex's subscriber
        // reads nothing while this workspace writes 40 events (over the bound of 16), then
        // gets its own next one, without an error.
        let globex_key = app.key_in("globex", Role::Admin).await;
        let globex_source = self::source(&app, &globex_key).await;
        let globex = domain::workspace::authenticate(&app.app.db, &globex_key).await.unwrap();
        let mut theirs = rapport::graphql::execute_stream(&api, globex, async_graphql::Request::new(INTERACTIONS));
        stream_joined(&app, &mut theirs, &globex_source).await;
        for n in 0..40 {
            ingest(&app, &source, item("ana", &format!("b{n}"), false)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        ingest(&app, &globex_source, item("bo", "g1", false)).await;
        let response = tokio::time::timeout(WAIT, theirs.next()).await.unwrap().expect("an answer");
        assert!(response.errors.is_empty(), "{:?}", response.errors);
        assert_eq!(response.data.into_json().unwrap()["interactionReceived"]["interaction"]["text"], "bo says g1");
    }
}

/// PostgreSQL: a `rapport` process of its own writes (the demo's data) while this one
/// serves the subscription; its events arrive through the database's notification.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_written_by_another_process_reaches_a_subscriber() {
    let Some(app) = TestApp::start(crate::common::Backend::Postgres).await else {
        eprintln!("skipped: set RAPPORT_TEST_DATABASE_URL to run the PostgreSQL variant");
        return;
    };
    let key = app.key_in("default", Role::Viewer).await;
    let admin = app.key_in("default", Role::Admin).await;
    let markers = source(&app, &admin).await;
    let mut client = Client::open(&app, &key).await;
    client.subscribe("i", INTERACTIONS, json!({})).await;
    // Outbound markers: they make no customer, and the demo seeds only a workspace
    // without customers.
    joined(&app, &mut client, &markers, &["i"], true).await;
    let config = crate::processes::config_file(&app, "enabled = false\n");
    let output = crate::processes::rapport(&config)
        .arg("demo")
        .output()
        .expect("rapport demo runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let data = client.data("i").await;
    assert!(
        data["interactionReceived"]["interaction"]["text"].is_string(),
        "{data}"
    );
}

backend_test! {
    async fn a_replay_reads_the_rows_its_events_name_in_order_across_pages_and_leaves_out_the_deleted(app: TestApp) {
        let acme = app.key_in("acme", Role::Admin).await;
        let acme_source = source(&app, &acme).await;
        let mut client = Client::open(&app, &acme).await;
        client.subscribe("i", INTERACTIONS, json!({})).await;
        joined(&app, &mut client, &acme_source, &["i"], false).await;
        ingest(&app, &acme_source, item("ana", "0", false)).await;
        let start = client.data("i").await["interactionReceived"]["cursor"].as_str().unwrap().to_owned();
        drop(client);

        // More than a replay page (200 events) in one batch, from two authors; then one
        // of them is deleted with everything theirs.
        let items: Vec<InboundItem> = (1..=250)
            .map(|n| item(if n % 2 == 0 { "bo" } else { "cy" }, &n.to_string(), false))
            .collect();
        rapport::ingest::ingest(&app.app.db, &acme_source, &items, None, None).await.unwrap();
        let customers = app.gql(&acme, "{ customers(first: 100) { edges { node { id displayName } } } }", json!({})).await;
        let id_of = |name: &str| {
            customers["customers"]["edges"].as_array().unwrap().iter()
                .find(|edge| edge["node"]["displayName"] == name)
                .map(|edge| edge["node"]["id"].clone())
                .unwrap()
        };
        app.gql(&acme, "mutation($id: ID!) { deleteCustomer(input: {id: $id}) { deletedCustomerId } }", json!({ "id": id_of("bo") })).await;

        let mut client = Client::open(&app, &acme).await;
        client.subscribe("i", INTERACTIONS, json!({ "after": start })).await;
        client.subscribe("cy", INTERACTIONS, json!({ "after": start, "filter": { "customerId": id_of("cy") } })).await;
        let (mut all, mut cy) = (Vec::new(), Vec::new());
        for _ in 0..250 {
            let message = client.next().await;
            assert!(message["payload"]["errors"].is_null(), "{message}");
            let interaction = &message["payload"]["data"]["interactionReceived"]["interaction"];
            assert_eq!(interaction["direction"], "INBOUND", "the row read whole: {message}");
            let text = interaction["text"].as_str().unwrap().to_owned();
            match message["id"].as_str().unwrap() {
                "i" => all.push(text),
                _ => cy.push(text),
            }
        }
        let expected: Vec<String> = (1..=250).filter(|n| n % 2 == 1).map(|n| format!("cy says {n}")).collect();
        assert_eq!(all, expected, "the deleted customer's messages are left out, the rest in log order");
        assert_eq!(cy, expected, "a filter judged on what the events name");
        client.quiet().await;
    }
}
