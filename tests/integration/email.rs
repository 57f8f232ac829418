//! The e-mail connector against a real IMAP server: Dovecot from Debian's packages,
//! started here with a configuration of its own on a free loopback port (skipped, with
//! the reason printed, when `dovecot` is not installed; `.ci/run` installs it). Messages
//! are real MIME documents delivered with IMAP `APPEND`; replies are caught by a small
//! SMTP server inside the test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use rapport::domain::Role;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::backend_test;
use crate::common::free_port;
use crate::feeds::{create_source, items, sync};

const USER: &str = "support@acme.example";
const PASSWORD: &str = "s3cret-imap-pass";

/// A Dovecot instance of this test: its own directory, port and users.
pub struct Dovecot {
    pub port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

fn dovecot_binary() -> Option<PathBuf> {
    ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"]
        .into_iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
}

/// The uid and gid of a system user, from /etc/passwd.
fn system_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&name))
            .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))?
    })
}

impl Dovecot {
    /// Starts Dovecot, or says why it cannot and returns `None`.
    pub async fn start() -> Option<Dovecot> {
        let Some(binary) = dovecot_binary() else {
            eprintln!(
                "skipped: dovecot is not installed (apt-get install dovecot-imapd; .ci/run does)"
            );
            return None;
        };
        let (Some((uid, gid)), Some(_)) = (system_user("dovecot"), system_user("dovenull")) else {
            eprintln!(
                "skipped: the dovecot and dovenull users are missing (install dovecot-imapd)"
            );
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let root = root.as_path();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mail = root.join("mail");
        std::fs::create_dir_all(&mail).unwrap();
        std::os::unix::fs::chown(&mail, Some(uid), Some(gid)).unwrap();
        std::fs::write(root.join("passwd"), format!("{USER}:{{PLAIN}}{PASSWORD}\n")).unwrap();
        let port = free_port();
        let conf = root.join("dovecot.conf");
        std::fs::write(&conf, config(root, port, uid, gid)).unwrap();
        let child = Command::new(binary)
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dovecot starts");
        let dovecot = Dovecot {
            port,
            _dir: dir,
            child,
        };
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Some(dovecot);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "dovecot did not listen on {port}: {}",
            std::fs::read_to_string(root.join("dovecot.log")).unwrap_or_default()
        );
    }

    /// Delivers a message into the inbox with IMAP `APPEND`, as a mail client would.
    pub async fn append(&self, message: &str) {
        self.append_all(&[message]).await;
    }

    /// Delivers `messages` into the inbox in order, over one IMAP session.
    pub async fn append_all(&self, messages: &[&str]) {
        let log = self._dir.path().join("dovecot.log");
        let stream = TcpStream::connect(("127.0.0.1", self.port)).await.unwrap();
        let mut stream = BufReader::new(stream);
        let mut line = String::new();
        stream.read_line(&mut line).await.unwrap();
        let send = |text: String| text.into_bytes();
        stream
            .get_mut()
            .write_all(&send(format!("a LOGIN \"{USER}\" \"{PASSWORD}\"\r\n")))
            .await
            .unwrap();
        expect(&mut stream, "a OK", &log).await;
        for message in messages {
            let message = message.replace("\r\n", "\n").replace('\n', "\r\n");
            stream
                .get_mut()
                .write_all(&send(format!("b APPEND INBOX {{{}}}\r\n", message.len())))
                .await
                .unwrap();
            expect(&mut stream, "+", &log).await;
            stream
                .get_mut()
                .write_all(message.as_bytes())
                .await
                .unwrap();
            stream.get_mut().write_all(b"\r\n").await.unwrap();
            expect(&mut stream, "b OK", &log).await;
        }
        stream.get_mut().write_all(b"c LOGOUT\r\n").await.unwrap();
    }

    pub fn config(&self, smtp_port: u16) -> Value {
        json!({
            "imap_host": "127.0.0.1", "imap_port": self.port, "username": USER, "password": PASSWORD,
            "mailbox": "INBOX", "tls": false, "smtp_host": "127.0.0.1", "smtp_port": smtp_port,
        })
    }
}

async fn expect(stream: &mut BufReader<TcpStream>, prefix: &str, log: &Path) {
    loop {
        let mut line = String::new();
        assert!(
            stream.read_line(&mut line).await.unwrap() > 0,
            "IMAP hung up waiting for {prefix}"
        );
        if line.starts_with("* BYE") {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("IMAP: {line}\ndovecot.log:\n{log}");
        }
        if line.starts_with(prefix) {
            return;
        }
        assert!(
            !line.starts_with("a NO") && !line.starts_with("b NO") && !line.contains(" BAD "),
            "IMAP: {line}"
        );
    }
}

fn config(root: &Path, port: u16, uid: u32, gid: u32) -> String {
    let root = root.display();
    format!(
        "base_dir = {root}/run\nstate_dir = {root}/state\nlog_path = {root}/dovecot.log\n\
         protocols = imap\nlisten = 127.0.0.1\nssl = no\ndisable_plaintext_auth = no\n\
         auth_mechanisms = plain login\nfirst_valid_uid = {uid}\nmail_location = maildir:{root}/mail/%u\n\
         default_internal_user = dovecot\ndefault_internal_group = dovecot\ndefault_login_user = dovenull\n\
         passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {root}/passwd\n}}\n\
         userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={root}/mail/%u\n}}\n\
         service imap-login {{\n  chroot =\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
         service anvil {{\n  chroot =\n}}\n"
    )
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its children too.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// A message an SMTP client submitted.
#[derive(Clone, Debug, Default)]
pub struct Submitted {
    pub auth: Option<String>,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: String,
}

/// A minimal SMTP submission server on 127.0.0.1 that accepts every message (after
/// `AUTH PLAIN`) and keeps it.
pub async fn smtp_catcher() -> (u16, Arc<Mutex<Vec<Submitted>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let caught = Arc::new(Mutex::new(Vec::new()));
    let shared = caught.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let caught = shared.clone();
            tokio::spawn(async move {
                let mut stream = BufReader::new(stream);
                let mut message = Submitted::default();
                stream
                    .get_mut()
                    .write_all(b"220 catcher.test ESMTP ready\r\n")
                    .await
                    .unwrap();
                loop {
                    let mut line = String::new();
                    if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let upper = line.to_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        b"250-catcher.test\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("AUTH PLAIN ") {
                        message.auth = Some(line[11..].trim().to_owned());
                        b"235 2.7.0 Authentication successful\r\n"
                    } else if upper.starts_with("MAIL FROM:") {
                        message.mail_from = line[10..].trim().to_owned();
                        b"250 2.1.0 Ok\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        message.rcpt_to.push(line[8..].trim().to_owned());
                        b"250 2.1.5 Ok\r\n"
                    } else if upper.starts_with("DATA") {
                        stream
                            .get_mut()
                            .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                            .await
                            .unwrap();
                        let mut data = Vec::new();
                        while !data.ends_with(b"\r\n.\r\n") {
                            let mut byte = [0u8; 1];
                            if stream.read_exact(&mut byte).await.is_err() {
                                return;
                            }
                            data.push(byte[0]);
                        }
                        message.data =
                            String::from_utf8_lossy(&data[..data.len() - 5]).into_owned();
                        caught.lock().unwrap().push(message.clone());
                        b"250 2.0.0 Ok: queued\r\n"
                    } else if upper.starts_with("QUIT") {
                        let _ = stream.get_mut().write_all(b"221 2.0.0 Bye\r\n").await;
                        return;
                    } else {
                        b"502 5.5.2 Error: command not recognized\r\n"
                    };
                    stream.get_mut().write_all(reply).await.unwrap();
                }
            });
        }
    });
    (port, caught)
}

const FIRST: &str = "Return-Path: <priya@northwind.example>
From: Priya Natarajan <priya@northwind.example>
To: Acme Support <support@acme.example>
Subject: Export keeps timing out
Date: Wed, 18 Nov 2026 09:12:00 +0100
Message-ID: <CAF1x2y3-export@mail.northwind.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Hello,

the CSV export of our 40k contacts stops after two minutes. It is blocking o=
ur monthly report. Our caf=C3=A9 team is waiting!

Priya
";

const RICH: &str = "From: =?UTF-8?Q?Luc=C3=ADa_Fern=C3=A1ndez?= <Lucia@Cancion.example>
To: support@acme.example
Subject: =?UTF-8?Q?Canci=C3=B3n_del_verano_y_una_factura?=
Date: Thu, 19 Nov 2026 15:05:00 +0000
Message-ID: <20261119150500.lucia@cancion.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=\"outer-boundary\"

--outer-boundary
Content-Type: multipart/alternative; boundary=\"inner-boundary\"

--inner-boundary
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

¡Hola! Os adjunto la factura. ¡Gracias por todo!
--inner-boundary
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: 8bit

<html><body><p>¡Hola! Os adjunto la <b>factura</b>. ¡Gracias por todo!</p></body></html>
--inner-boundary--

--outer-boundary
Content-Type: application/pdf; name=\"factura-2026-11.pdf\"
Content-Disposition: attachment; filename=\"factura-2026-11.pdf\"
Content-Transfer-Encoding: base64

JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PC9UeXBlL0NhdGFsb2c+PgplbmRvYmoKdHJhaWxlcgo8
PC9Sb290IDEgMCBSPj4KJSVFT0YK
--outer-boundary--
";

const REPLY_FROM_CUSTOMER: &str = "From: Priya Natarajan <priya@northwind.example>
To: support@acme.example
Subject: Re: Export keeps timing out
Date: Wed, 18 Nov 2026 12:30:00 +0100
Message-ID: <CAF9z8y7-export-2@mail.northwind.example>
In-Reply-To: <CAF1x2y3-export@mail.northwind.example>
References: <CAF1x2y3-export@mail.northwind.example>
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8

<div dir=\"ltr\"><p>Splitting by tag works, thanks!</p><blockquote>On Wed, Acme wrote: …</blockquote></div>
";

const OURS: &str = "From: Acme Support <support@acme.example>
To: Priya Natarajan <priya@northwind.example>
Subject: Re: Export keeps timing out
Date: Wed, 18 Nov 2026 10:00:00 +0100
Message-ID: <acme-1@acme.example>
In-Reply-To: <CAF1x2y3-export@mail.northwind.example>
References: <CAF1x2y3-export@mail.northwind.example>
Content-Type: text/plain; charset=us-ascii

Sorry about that! Splitting the export by tag works while we fix it.
";

const NO_ID: &str = "From: ben@okafor-design.example
To: support@acme.example
Subject: no message id here
Date: Fri, 20 Nov 2026 08:30:00 +0000

Could you snooze conversations until Monday?
";

backend_test!(
    async fn mail_from_a_real_imap_server_lands_threaded_and_replies_go_out_over_smtp(
        app: TestApp,
    ) {
        let Some(dovecot) = Dovecot::start().await else {
            return;
        };
        let (smtp_port, caught) = smtp_catcher().await;
        for message in [FIRST, RICH, OURS, REPLY_FROM_CUSTOMER, NO_ID] {
            dovecot.append(message).await;
        }
        let key = app.key(Role::Admin).await;
        let created = app
            .gql(&key, crate::feeds::CREATE, json!({ "input": { "channel": "EMAIL", "name": "support inbox", "config": dovecot.config(smtp_port) } }))
            .await;
        assert_eq!(
            created["createSource"]["source"]["secretsSet"],
            json!(["password"])
        );
        assert!(!created.to_string().contains(PASSWORD));
        let id = created["createSource"]["source"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 5);
        let cursor: Value =
            serde_json::from_str(report["source"]["cursor"].as_str().unwrap()).unwrap();
        assert_eq!(cursor["uid"], 5);
        assert!(cursor["uidvalidity"].as_u64().unwrap() > 0);

        let all = items(&app, &key).await;
        let first = &all["CAF1x2y3-export@mail.northwind.example"];
        assert_eq!(first["kind"], "EMAIL");
        assert_eq!(first["subject"], "Export keeps timing out");
        assert!(
            first["text"]
                .as_str()
                .unwrap()
                .contains("blocking our monthly report. Our café team"),
            "{first:#}"
        );
        assert_eq!(first["customer"]["displayName"], "Priya Natarajan");
        assert_eq!(
            first["customer"]["contactPoints"],
            json!([{ "kind": "EMAIL", "value": "priya@northwind.example" }])
        );
        // The customer's reply threads by In-Reply-To/References; HTML-only becomes text.
        let reply = &all["CAF9z8y7-export-2@mail.northwind.example"];
        assert_eq!(reply["conversation"]["id"], first["conversation"]["id"]);
        assert!(reply["text"]
            .as_str()
            .unwrap()
            .starts_with("Splitting by tag works, thanks!"));
        // Our own message is outbound, in Priya's conversation, on Priya's customer.
        let ours = &all["acme-1@acme.example"];
        assert_eq!(ours["direction"], "OUTBOUND");
        assert_eq!(ours["customer"]["id"], first["customer"]["id"]);
        assert_eq!(ours["conversation"]["id"], first["conversation"]["id"]);
        // multipart: the plain part wins, encoded words decoded, the address lower-cased.
        let rich = &all["20261119150500.lucia@cancion.example"];
        assert_eq!(rich["subject"], "Canción del verano y una factura");
        assert_eq!(
            rich["text"],
            "¡Hola! Os adjunto la factura. ¡Gracias por todo!"
        );
        assert_eq!(rich["customer"]["displayName"], "Lucía Fernández");
        assert_eq!(rich["language"], "es");
        assert_eq!(
            rich["customer"]["contactPoints"],
            json!([{ "kind": "EMAIL", "value": "lucia@cancion.example" }])
        );
        // Attachments are listed, not stored.
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let row = entity::interaction::Entity::find()
            .filter(
                entity::interaction::Column::ExternalId.eq("20261119150500.lucia@cancion.example"),
            )
            .one(&app.app.db)
            .await
            .unwrap()
            .unwrap();
        let raw = row.raw.unwrap();
        assert_eq!(
            raw["attachments"],
            json!([{ "name": "factura-2026-11.pdf", "content_type": "application/pdf", "size": 78 }])
        );
        assert!(!raw.to_string().contains("JVBERi0"));
        // No Message-ID: the (UIDVALIDITY, UID) names it.
        assert!(
            all.keys()
                .any(|id| id.starts_with("imap:") && id.ends_with(":5")),
            "{:?}",
            all.keys()
        );

        // Nothing twice; a new message is picked up after the cursor; messages stay unread.
        assert_eq!(sync(&app, &key, &id).await["newItems"], 0);
        dovecot
            .append(
                &FIRST
                    .replace("CAF1x2y3-export@", "CAF-third@")
                    .replace("Export keeps timing out", "Another question"),
            )
            .await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 1);
        assert_eq!(
            serde_json::from_str::<Value>(report["source"]["cursor"].as_str().unwrap()).unwrap()
                ["uid"],
            6
        );

        // The same e-mail through a webhook form lands on the same customer.
        let webhook = create_source(
            &app,
            &key,
            "WEBHOOK",
            "form",
            json!({ "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" }),
        )
        .await;
        let path = format!("/webhooks/{webhook}");
        let body = json!({ "name": "Priya N.", "email": "PRIYA@northwind.example", "text": "Form: please call me" }).to_string();
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let signature =
            connectors::webhook::Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
                .unwrap()
                .sign_standard("form-1", &timestamp, body.as_bytes())
                .unwrap();
        let status = app
            .client
            .post(app.url(&path))
            .header("content-type", "application/json")
            .header("webhook-id", "form-1")
            .header("webhook-timestamp", &timestamp)
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
        let all = items(&app, &key).await;
        assert_eq!(all["form-1"]["customer"]["id"], first["customer"]["id"]);

        // Reply over SMTP with the threading headers; a retry is not sent twice.
        let agent = app.key(Role::Agent).await;
        let target = crate::mastodon::find_interaction(
            &app,
            &key,
            "CAF9z8y7-export-2@mail.northwind.example",
        )
        .await;
        let mutation = "mutation($input: ReplyToInteractionInput!) { replyToInteraction(input: $input) { interaction { id externalId direction conversation { id } customer { id } } } }";
        let input = json!({ "interactionId": target, "text": "Glad it works!\nWe shipped the fix today.\n.\nAcme" });
        let sent = app.gql(&agent, mutation, json!({ "input": input })).await["replyToInteraction"]
            ["interaction"]
            .clone();
        assert_eq!(sent["direction"], "OUTBOUND");
        assert_eq!(sent["conversation"]["id"], first["conversation"]["id"]);
        let again = app.gql(&agent, mutation, json!({ "input": input })).await
            ["replyToInteraction"]["interaction"]
            .clone();
        assert_eq!(again["id"], sent["id"]);
        let caught = caught.lock().unwrap().clone();
        assert_eq!(caught.len(), 1, "a retried reply is not sent twice");
        let mail = &caught[0];
        let auth = base64::engine::general_purpose::STANDARD
            .decode(mail.auth.as_ref().unwrap())
            .unwrap();
        assert_eq!(auth, format!("\0{USER}\0{PASSWORD}").into_bytes());
        assert_eq!(mail.mail_from, format!("<{USER}>"));
        assert_eq!(mail.rcpt_to, vec!["<priya@northwind.example>".to_owned()]);
        assert!(
            mail.data
                .contains("Subject: Re: Export keeps timing out\r\n"),
            "{}",
            mail.data
        );
        assert!(mail
            .data
            .contains("In-Reply-To: <CAF9z8y7-export-2@mail.northwind.example>\r\n"));
        assert!(mail.data.contains("References: <CAF1x2y3-export@mail.northwind.example> <CAF9z8y7-export-2@mail.northwind.example>\r\n"));
        assert!(mail.data.contains(&format!(
            "Message-ID: <{}>",
            sent["externalId"].as_str().unwrap()
        )));
        let parsed = mail_parser::MessageParser::default()
            .parse(mail.data.as_bytes())
            .unwrap();
        assert_eq!(
            parsed.body_text(0).unwrap().trim(),
            "Glad it works!\r\nWe shipped the fix today.\r\n.\r\nAcme"
        );
    }
);

backend_test!(
    async fn a_mailbox_is_read_a_thousand_messages_a_session(app: TestApp) {
        let Some(dovecot) = Dovecot::start().await else {
            return;
        };
        let messages: Vec<String> = (0..1_050)
            .map(|n| {
                format!(
                    "From: Fan {n} <fan{n}@fans.example>\nTo: support@acme.example\nSubject: question {n}\nDate: Fri, 20 Nov 2026 08:30:00 +0000\nMessage-ID: <question-{n}@fans.example>\n\nHow do I export my contacts? ({n})\n"
                )
            })
            .collect();
        let messages: Vec<&str> = messages.iter().map(String::as_str).collect();
        dovecot.append_all(&messages).await;
        let key = app.key(Role::Admin).await;
        let (smtp_port, _) = smtp_catcher().await;
        let id = create_source(&app, &key, "EMAIL", "fans", dovecot.config(smtp_port)).await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        // Two pulls, each one IMAP session: a thousand messages, then the fifty after them.
        assert_eq!(
            (report["newItems"].clone(), report["batches"].clone()),
            (json!(1_050), json!(2)),
            "{report:#}"
        );
        let cursor: Value =
            serde_json::from_str(report["source"]["cursor"].as_str().unwrap()).unwrap();
        assert_eq!(cursor["uid"], 1_050);
        // Each once.
        let expected: std::collections::BTreeMap<String, usize> = (0..1_050)
            .map(|n| (format!("question-{n}@fans.example"), 1))
            .collect();
        assert_eq!(crate::mastodon::stored_ids(&app).await, expected);
        // Nothing new: one more session, nothing stored twice.
        let report = sync(&app, &key, &id).await;
        assert_eq!(
            (report["newItems"].clone(), report["duplicates"].clone()),
            (json!(0), json!(0)),
            "{report:#}"
        );
    }
);

backend_test!(
    async fn a_wrong_password_or_a_dead_server_is_a_source_error(app: TestApp) {
        let Some(dovecot) = Dovecot::start().await else {
            return;
        };
        let key = app.key(Role::Admin).await;
        let mut config = dovecot.config(25);
        config["password"] = json!("wrong-password");
        let id = create_source(&app, &key, "EMAIL", "wrong password", config).await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["source"]["status"], "FAILING", "{report:#}");
        let error = report["source"]["lastError"].as_str().unwrap();
        assert!(error.contains("refused the login"), "{error}");
        assert!(!error.contains("wrong-password"));
        let mut config = dovecot.config(25);
        config["imap_port"] = json!(free_port());
        let id = create_source(&app, &key, "EMAIL", "nobody listens", config).await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["source"]["status"], "BACKING_OFF");
        assert!(
            report["source"]["lastError"]
                .as_str()
                .unwrap()
                .contains("could not connect"),
            "{report:#}"
        );
    }
);
