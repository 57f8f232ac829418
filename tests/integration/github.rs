//! The GitHub connector against a local stand-in for GitHub's REST API answering as its
//! documentation says (<https://docs.github.com/en/rest>: "List repository issues", "List
//! issue comments for a repository", "Create an issue comment", "Get the authenticated
//! user", "Rate limits for the REST API", "Using pagination in the REST API"): lists sorted
//! by `updated` with `direction` and an inclusive `since`, paged with `page`/`per_page` and
//! a `Link` header (`rel="next"`, `rel="last"`), the `x-ratelimit-limit`, `-remaining`,
//! `-used`, `-reset` (epoch seconds) and `-resource` headers on every answer, and errors as
//! `{"message", "documentation_url"}`. The payloads are written here, field for field from
//! those pages, for people made up for the test.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use rapport::domain::Role;
use serde_json::{json, Value};

use crate::backend_test;
use crate::common::TestApp;
use crate::feeds::{create_source, items, sync};
use crate::mastodon::{find_interaction, source_row, stored_ids};
use crate::platform::{Platform, Reply, Seen};

const TOKEN: &str = "github_pat_11AAAAAAA0bQ3xYzRapportTest_k9v2Lw8XhQpTnS4mUe7JcRb";
const REPO: &str = "acme/widgets";
const US: (&str, u64) = ("acme-support", 9_000_001);
const MAYA: (&str, u64) = ("maya-l", 5_811_112);
const LUCIA: (&str, u64) = ("lucia-p", 7_001);
const DEPENDABOT: (&str, u64) = ("dependabot[bot]", 49_699_333);
const REPLY: &str = "mutation($input: ReplyToInteractionInput!) { replyToInteraction(input: $input) { interaction { id externalId direction kind text url conversation { id } } } }";

/// What GitHub holds and how it answers.
#[derive(Default)]
struct State {
    /// Issues and pull requests, by repository.
    issues: Vec<Value>,
    /// Issue comments.
    comments: Vec<Value>,
    /// Comment listings say the hour's budget is spent (`x-ratelimit-remaining: 0`).
    exhausted: bool,
    /// GraphQL answers `RATE_LIMITED` with its budget spent.
    graphql_exhausted: bool,
    /// The next comment listings answer this instead.
    throttle: Vec<Reply>,
    /// Comments created so far.
    posted: u64,
    /// How many of the next comment creations a proxy loses (a 502 after GitHub made it).
    lose: usize,
    /// How many of the next comment creations answer 502 before making anything.
    down: usize,
    /// Discussions of acme/widgets, with their comments and replies.
    discussions: Vec<Value>,
    /// Comments of about 256 KiB each (40 spam comments near GitHub's 65,536 characters):
    /// a page of more than 40 of them is over the connector's 10 MiB cap.
    big: Vec<u64>,
    /// Comments that alone make any page over the cap.
    huge: Vec<u64>,
    /// A discussions page of more than this many discussions is over the cap.
    discussions_cap: Option<usize>,
    /// Listings' `Link` headers name this host instead of the API's (a GitHub Enterprise
    /// Server reached by another name).
    link_host: Option<String>,
}

/// The connector's body cap.
const CAP: usize = 10 * 1024 * 1024;

#[derive(Clone)]
struct Github {
    server: Platform,
    state: Arc<Mutex<State>>,
    /// `x-ratelimit-reset` of every answer.
    reset: i64,
}

/// Minute `n` of the test's day.
fn minute(n: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-02T09:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
        + Duration::minutes(n)
}

fn stamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn header(seen: &Seen, name: &str) -> String {
    seen.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

fn query(seen: &Seen) -> HashMap<String, String> {
    reqwest::Url::parse(&format!("http://q/?{}", seen.query))
        .unwrap()
        .query_pairs()
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}

/// A "simple user" as GitHub embeds it.
fn user((login, id): (&str, u64), kind: &str) -> Value {
    json!({
        "login": login, "id": id, "node_id": format!("MDQ6VXNlcj{id}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "gravatar_id": "", "url": format!("https://api.github.com/users/{login}"),
        "html_url": format!("https://github.com/{login}"),
        "followers_url": format!("https://api.github.com/users/{login}/followers"),
        "repos_url": format!("https://api.github.com/users/{login}/repos"),
        "type": kind, "user_view_type": "public", "site_admin": false
    })
}

/// An issue (or, with `pull`, a pull request) as "List repository issues" shows it.
fn issue(
    number: u64,
    author: (&str, u64),
    title: &str,
    body: &str,
    created: i64,
    pull: bool,
) -> Value {
    let api = format!("https://api.github.com/repos/{REPO}/issues/{number}");
    let web = if pull { "pull" } else { "issues" };
    let mut issue = json!({
        "id": 2_000_000_000u64 + number, "node_id": format!("I_kwDOKx3Y5s6{number}"),
        "url": api, "repository_url": format!("https://api.github.com/repos/{REPO}"),
        "labels_url": format!("{api}/labels{{/name}}"), "comments_url": format!("{api}/comments"),
        "events_url": format!("{api}/events"),
        "html_url": format!("https://github.com/{REPO}/{web}/{number}"),
        "number": number, "state": "open", "state_reason": null, "title": title, "body": body,
        "user": user(author, "User"), "labels": [], "assignee": null, "assignees": [],
        "milestone": null, "locked": false, "active_lock_reason": null, "comments": 2,
        "closed_at": null, "created_at": stamp(minute(created)),
        "updated_at": stamp(minute(created)), "closed_by": null,
        "author_association": "NONE", "draft": false,
        "reactions": { "url": format!("{api}/reactions"), "total_count": 0, "+1": 0, "-1": 0,
            "laugh": 0, "hooray": 0, "confused": 0, "heart": 0, "rocket": 0, "eyes": 0 },
        "timeline_url": format!("{api}/timeline"), "performed_via_github_app": null
    });
    if pull {
        issue["pull_request"] = json!({
            "url": format!("https://api.github.com/repos/{REPO}/pulls/{number}"),
            "html_url": format!("https://github.com/{REPO}/pull/{number}"),
            "diff_url": format!("https://github.com/{REPO}/pull/{number}.diff"),
            "patch_url": format!("https://github.com/{REPO}/pull/{number}.patch"),
            "merged_at": null
        });
    }
    issue
}

/// An issue comment as "List issue comments for a repository" shows it.
fn comment(id: u64, author: (&str, u64), kind: &str, issue: u64, body: &str, at: i64) -> Value {
    json!({
        "id": id, "node_id": format!("IC_kwDOKx3Y5s{id}"),
        "url": format!("https://api.github.com/repos/{REPO}/issues/comments/{id}"),
        "html_url": format!("https://github.com/{REPO}/issues/{issue}#issuecomment-{id}"),
        "body": body, "user": user(author, kind),
        "created_at": stamp(minute(at)), "updated_at": stamp(minute(at)),
        "issue_url": format!("https://api.github.com/repos/{REPO}/issues/{issue}"),
        "author_association": if author.1 == US.1 { "MEMBER" } else { "NONE" },
        "performed_via_github_app": null,
        "reactions": { "url": format!("https://api.github.com/repos/{REPO}/issues/comments/{id}/reactions"),
            "total_count": 0, "+1": 0, "-1": 0, "laugh": 0, "hooray": 0, "confused": 0,
            "heart": 0, "rocket": 0, "eyes": 0 }
    })
}

/// An actor as the discussions query selects it (`...who`).
fn actor((login, id): (&str, u64), kind: &str) -> Value {
    let mut actor = json!({
        "__typename": kind, "login": login, "url": format!("https://github.com/{login}"),
        "avatarUrl": format!("https://avatars.githubusercontent.com/u/{id}?v=4")
    });
    if kind == "User" {
        actor["databaseId"] = json!(id);
    }
    actor
}

/// A discussion comment (or a reply) as the discussions query selects it.
fn discussion_comment(
    id: &str,
    number: u64,
    author: (&str, u64),
    kind: &str,
    body: &str,
    at: i64,
) -> Value {
    json!({
        "id": id, "body": body,
        "url": format!("https://github.com/{REPO}/discussions/{number}#discussioncomment-{}", id.len()),
        "createdAt": stamp(minute(at)), "updatedAt": stamp(minute(at)),
        "author": actor(author, kind), "replies": { "nodes": [] }
    })
}

/// A discussion as the discussions query selects it.
fn discussion(number: u64, author: (&str, u64), title: &str, body: &str, at: i64) -> Value {
    json!({
        "id": format!("D_kwDOKx3Y5s4AXy{number}"), "number": number, "title": title,
        "body": body, "url": format!("https://github.com/{REPO}/discussions/{number}"),
        "createdAt": stamp(minute(at)), "updatedAt": stamp(minute(at)),
        "author": actor(author, "User"), "comments": { "nodes": [] }
    })
}

fn error(status: u16, message: &str, docs: &str) -> Reply {
    Reply {
        status,
        ..Reply::json(
            &json!({ "message": message, "documentation_url": docs, "status": status.to_string() }),
        )
    }
}

impl Github {
    async fn start() -> Github {
        let github = Github {
            server: Platform::start().await,
            state: Arc::new(Mutex::new(State::default())),
            reset: Utc::now().timestamp() + 1_200,
        };
        let serving = github.clone();
        github.server.handle("/user", move |seen| {
            let reply = serving.refused(seen).unwrap_or_else(|| {
                let mut me = user(US, "User");
                me["name"] = json!("Acme Support");
                me["company"] = json!("Acme");
                me["created_at"] = json!("2019-03-01T10:00:00Z");
                Reply::json(&me)
            });
            serving.limited(reply, false)
        });
        let serving = github.clone();
        github
            .server
            .handle(&format!("/repos/{REPO}/issues"), move |seen| {
                let reply = serving.list(seen, false);
                serving.limited(reply, false)
            });
        let serving = github.clone();
        github
            .server
            .handle(&format!("/repos/{REPO}/issues/comments"), move |seen| {
                let throttled = {
                    let mut state = serving.state.lock().unwrap();
                    (!state.throttle.is_empty()).then(|| state.throttle.remove(0))
                };
                let reply = throttled.unwrap_or_else(|| serving.list(seen, true));
                serving.limited(reply, true)
            });
        let serving = github.clone();
        github.server.handle("/graphql", move |seen| {
            let spent = serving.state.lock().unwrap().graphql_exhausted;
            let reply = if spent {
                // GraphQL's own budget: 200 with an error of type RATE_LIMITED.
                Reply::json(&json!({ "errors": [{ "type": "RATE_LIMITED",
                    "code": "graphql_rate_limit",
                    "message": "API rate limit already exceeded for user ID 9000001." }] }))
            } else {
                serving.graphql(seen)
            };
            serving.limited(reply, spent)
        });
        for number in [1347, 1350] {
            let serving = github.clone();
            github.server.handle(
                &format!("/repos/{REPO}/issues/{number}/comments"),
                move |seen| {
                    let reply = serving.create(seen, number);
                    serving.limited(reply, false)
                },
            );
        }
        github
    }

    /// The identity of GitHub user `id` of this stand-in: qualified by its host and port,
    /// as a GitHub Enterprise Server's (it is not api.github.com).
    fn identity(&self, id: u64) -> String {
        format!("{}#{id}", self.server.base.trim_start_matches("http://"))
    }

    fn config(&self, extra: Value) -> Value {
        let mut config =
            json!({ "base_url": self.server.base, "token": TOKEN, "repositories": [REPO] });
        for (key, value) in extra.as_object().unwrap() {
            config[key] = value.clone();
        }
        config
    }

    async fn source(&self, app: &TestApp, key: &str, name: &str, extra: Value) -> String {
        create_source(app, key, "GITHUB", name, self.config(extra)).await
    }

    fn seen(&self, path: &str) -> Vec<Seen> {
        self.server.seen(path)
    }

    fn comments_seen(&self) -> Vec<Seen> {
        self.seen(&format!("/repos/{REPO}/issues/comments"))
    }

    /// The rate-limit headers of every answer (the token's hour of 5,000 requests); `last`:
    /// whether this answer may be the one that spends the budget.
    fn limited(&self, reply: Reply, last: bool) -> Reply {
        let exhausted = last && {
            let state = self.state.lock().unwrap();
            state.exhausted || state.graphql_exhausted
        };
        let (remaining, used) = if exhausted {
            ("0", "5000")
        } else {
            ("4987", "13")
        };
        reply
            .header("x-ratelimit-limit", "5000")
            .header("x-ratelimit-remaining", remaining)
            .header("x-ratelimit-used", used)
            .header("x-ratelimit-reset", &self.reset.to_string())
            .header("x-ratelimit-resource", "core")
            .header("x-github-api-version-selected", "2022-11-28")
    }

    /// `None` when `seen` carries the token and the headers GitHub asks for.
    fn refused(&self, seen: &Seen) -> Option<Reply> {
        assert_eq!(header(seen, "accept"), "application/vnd.github+json");
        assert_eq!(header(seen, "x-github-api-version"), "2022-11-28");
        assert!(
            header(seen, "user-agent").starts_with("rapport/"),
            "{seen:?}"
        );
        (header(seen, "authorization") != format!("Bearer {TOKEN}"))
            .then(|| error(401, "Bad credentials", "https://docs.github.com/rest"))
    }

    /// A list of issues or comments as GitHub pages it.
    fn list(&self, seen: &Seen, comments: bool) -> Reply {
        if let Some(refused) = self.refused(seen) {
            return refused;
        }
        let q = query(seen);
        assert_eq!(q["sort"], "updated");
        if !comments {
            assert_eq!(q["state"], "all");
        }
        let state = self.state.lock().unwrap();
        let since = q.get("since").map(|since| {
            DateTime::parse_from_rfc3339(since)
                .unwrap()
                .with_timezone(&Utc)
        });
        let key = |item: &Value| {
            let at: DateTime<Utc> = item["updated_at"].as_str().unwrap().parse().unwrap();
            (at, item["id"].as_u64().unwrap())
        };
        let mut all: Vec<&Value> = if comments {
            state.comments.iter().collect()
        } else {
            state.issues.iter().collect()
        };
        // `since`: updated at or after it.
        all.retain(|item| since.is_none_or(|since| key(item).0 >= since));
        all.sort_by_key(|item| key(item));
        if q.get("direction").map(String::as_str) != Some("asc") {
            all.reverse();
        }
        let per_page: usize = q.get("per_page").map_or(30, |n| n.parse().unwrap());
        let per_page = per_page.clamp(1, 100);
        let page: usize = q.get("page").map_or(1, |n| n.parse().unwrap());
        let body: Vec<Value> = all
            .iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .map(|item| (*item).clone())
            .collect();
        let big = body
            .iter()
            .filter(|item| state.big.contains(&item["id"].as_u64().unwrap()))
            .count();
        if big > 40
            || body
                .iter()
                .any(|item| state.huge.contains(&item["id"].as_u64().unwrap()))
        {
            // Stands for the page's JSON: only its size matters to the connector.
            return Reply::ok("application/json", vec![b' '; CAP + 1]);
        }
        let last = all.len().div_ceil(per_page).max(1);
        let mut reply = Reply::json(&json!(body));
        if page < last {
            let link = |page: usize| {
                let mut url = reqwest::Url::parse(&self.server.url(&seen.path)).unwrap();
                if let Some(host) = &state.link_host {
                    url.set_host(Some(host)).unwrap();
                }
                url.query_pairs_mut().clear();
                for (key, value) in reqwest::Url::parse(&format!("http://q/?{}", seen.query))
                    .unwrap()
                    .query_pairs()
                    .filter(|(key, _)| key != "page")
                {
                    url.query_pairs_mut().append_pair(&key, &value);
                }
                url.query_pairs_mut().append_pair("page", &page.to_string());
                url.to_string()
            };
            reply = reply.header(
                "link",
                &format!(
                    "<{}>; rel=\"next\", <{}>; rel=\"last\"",
                    link(page + 1),
                    link(last)
                ),
            );
        }
        reply
    }

    /// `POST /repos/{owner}/{repo}/issues/{number}/comments`.
    fn create(&self, seen: &Seen, number: u64) -> Reply {
        if let Some(refused) = self.refused(seen) {
            return refused;
        }
        let mut state = self.state.lock().unwrap();
        if seen.method == "GET" {
            // "List issue comments": this issue's, updated since `since`, oldest first.
            let q = query(seen);
            let since: DateTime<Utc> = q["since"].parse().unwrap();
            let issue_url = format!("https://api.github.com/repos/{REPO}/issues/{number}");
            let listed: Vec<Value> = state
                .comments
                .iter()
                .filter(|c| c["issue_url"] == issue_url.as_str())
                .filter(|c| {
                    c["updated_at"]
                        .as_str()
                        .unwrap()
                        .parse::<DateTime<Utc>>()
                        .unwrap()
                        >= since
                })
                .cloned()
                .collect();
            // Oldest first, paged as every listing.
            let per_page: usize = q.get("per_page").map_or(30, |n| n.parse().unwrap());
            let page: usize = q.get("page").map_or(1, |n| n.parse().unwrap());
            let body: Vec<Value> = listed
                .iter()
                .skip((page - 1) * per_page)
                .take(per_page)
                .cloned()
                .collect();
            let mut reply = Reply::json(&json!(body));
            if page * per_page < listed.len() {
                let mut url = reqwest::Url::parse(&self.server.url(&seen.path)).unwrap();
                url.query_pairs_mut()
                    .append_pair("since", &q["since"])
                    .append_pair("per_page", &per_page.to_string())
                    .append_pair("page", &(page + 1).to_string());
                reply = reply.header("link", &format!("<{url}>; rel=\"next\""));
            }
            return reply;
        }
        assert_eq!(seen.method, "POST");
        let body: Value = serde_json::from_slice(&seen.body).unwrap();
        if state.down > 0 {
            state.down -= 1;
            return error(502, "Server Error", "");
        }
        state.posted += 1;
        let id = 3_000_000_000 + state.posted;
        let mut made = comment(id, US, "User", number, body["body"].as_str().unwrap(), 0);
        let now = stamp(Utc::now());
        made["created_at"] = json!(now);
        made["updated_at"] = json!(now);
        state.comments.push(made.clone());
        if state.lose > 0 {
            state.lose -= 1;
            return Reply::status(502);
        }
        Reply {
            status: 201,
            ..Reply::json(&made)
        }
        .header(
            "location",
            &format!("https://api.github.com/repos/{REPO}/issues/comments/{id}"),
        )
    }

    /// `POST /graphql`: the discussions query and the `addDiscussionComment` mutation.
    fn graphql(&self, seen: &Seen) -> Reply {
        if let Some(refused) = self.refused(seen) {
            return refused;
        }
        assert_eq!(seen.method, "POST");
        let request: Value = serde_json::from_slice(&seen.body).unwrap();
        let query = request["query"].as_str().unwrap();
        let vars = &request["variables"];
        let mut state = self.state.lock().unwrap();
        // A discussion comment's parent, asked for a webhook's reply (by node id).
        if query.contains("replyTo { id }") && query.starts_with("query($id: ID!)") {
            let parent = state.discussions.iter().find_map(|d| {
                d["comments"]["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find_map(|c| {
                        c["replies"]["nodes"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .find(|r| r["id"] == vars["id"])
                            .map(|_| c["id"].clone())
                    })
            });
            let node = parent.map_or(Value::Null, |id| json!({ "replyTo": { "id": id } }));
            return Reply::json(&json!({ "data": { "node": node } }));
        }
        if query.starts_with("mutation") {
            assert!(query.contains("addDiscussionComment(input:"), "{query}");
            state.posted += 1;
            let n = state.posted;
            let discussion = state
                .discussions
                .iter_mut()
                .find(|d| d["id"] == vars["discussionId"])
                .unwrap();
            let number = discussion["number"].as_u64().unwrap();
            let made = discussion_comment(
                &format!("DC_kwDOKx3Y5s4AhNEW{n}"),
                number,
                US,
                "User",
                vars["body"].as_str().unwrap(),
                0,
            );
            let mut made = made;
            let now = stamp(Utc::now());
            made["createdAt"] = json!(now);
            made["updatedAt"] = json!(now);
            discussion["updatedAt"] = json!(now);
            let answer = json!({ "data": { "addDiscussionComment": { "comment": {
                "id": made["id"], "url": made["url"] } } } });
            match vars["replyToId"].as_str() {
                Some(parent) => {
                    made["replyTo"] = json!({ "id": parent });
                    let comment = discussion["comments"]["nodes"]
                        .as_array_mut()
                        .unwrap()
                        .iter_mut()
                        .find(|c| c["id"] == parent)
                        .unwrap();
                    comment["replies"]["nodes"]
                        .as_array_mut()
                        .unwrap()
                        .push(made);
                }
                None => discussion["comments"]["nodes"]
                    .as_array_mut()
                    .unwrap()
                    .push(made),
            }
            return Reply::json(&answer);
        }
        assert!(
            query.contains("orderBy: {field: UPDATED_AT, direction: DESC}"),
            "{query}"
        );
        if (vars["owner"].as_str(), vars["name"].as_str()) != (Some("acme"), Some("widgets")) {
            let name = format!(
                "{}/{}",
                vars["owner"].as_str().unwrap(),
                vars["name"].as_str().unwrap()
            );
            return Reply::json(&json!({
                "data": { "repository": null },
                "errors": [{ "type": "NOT_FOUND", "path": ["repository"],
                    "locations": [{ "line": 2, "column": 3 }],
                    "message": format!("Could not resolve to a Repository with the name '{name}'.") }]
            }));
        }
        let mut all: Vec<Value> = state.discussions.clone();
        all.sort_by_key(|d| std::cmp::Reverse(d["updatedAt"].as_str().unwrap().to_owned()));
        let first = vars["first"].as_u64().unwrap() as usize;
        let start = vars["after"].as_str().map_or(0, |after| {
            after.strip_prefix("Y3Vyc29y:").unwrap().parse().unwrap()
        });
        let (comments, replies) = (
            vars["comments"].as_u64().unwrap() as usize,
            vars["replies"].as_u64().unwrap() as usize,
        );
        let last = |nodes: &Value, n: usize| {
            let nodes = nodes.as_array().unwrap();
            json!(nodes[nodes.len().saturating_sub(n)..].to_vec())
        };
        let page: Vec<Value> = all
            .iter()
            .skip(start)
            .take(first)
            .map(|d| {
                let mut d = d.clone();
                let mut kept = last(&d["comments"]["nodes"], comments);
                for comment in kept.as_array_mut().unwrap() {
                    let nodes = last(&comment["replies"]["nodes"], replies);
                    comment["replies"]["nodes"] = nodes;
                }
                d["comments"]["nodes"] = kept;
                d
            })
            .collect();
        if state.discussions_cap.is_some_and(|cap| page.len() > cap) {
            return Reply::ok("application/json", vec![b' '; CAP + 1]);
        }
        let more = start + first < all.len();
        Reply::json(&json!({ "data": { "repository": {
            "hasDiscussionsEnabled": true,
            "discussions": {
                "pageInfo": { "hasNextPage": more,
                    "endCursor": format!("Y3Vyc29y:{}", start + page.len()) },
                "nodes": page
            }
        } } }))
    }

    fn add_issue(&self, issue: Value) {
        self.state.lock().unwrap().issues.push(issue);
    }

    fn add_comment(&self, comment: Value) {
        self.state.lock().unwrap().comments.push(comment);
    }

    /// Comments by a hundred fans on issue 1347, numbered `range`, one a minute (or all in
    /// one second, `same`).
    fn fans(&self, range: std::ops::Range<u64>, same: Option<i64>) {
        for n in range {
            let fan = n % 100;
            self.add_comment(comment(
                n,
                (&format!("fan-{fan}"), 100_000 + fan),
                "User",
                1347,
                &format!("question {n} about the export"),
                same.unwrap_or(n as i64),
            ));
        }
    }
}

/// The hidden marker of the reply whose body `body` is: `text`, a blank line and
/// `<!-- rapport:{16 hex digits} -->`. Returns the marker.
fn marked<'a>(body: &'a str, text: &str) -> &'a str {
    let marker = body
        .strip_prefix(&format!("{text}\n\n"))
        .unwrap_or_else(|| panic!("{body}"));
    let hex = marker
        .strip_prefix("<!-- rapport:")
        .and_then(|rest| rest.strip_suffix(" -->"))
        .unwrap_or_else(|| panic!("{body}"));
    assert!(
        hex.len() == 16 && hex.bytes().all(|c| c.is_ascii_hexdigit()),
        "{body}"
    );
    marker
}

fn expected(range: std::ops::Range<u64>) -> BTreeMap<String, usize> {
    range.map(|n| (format!("issuecomment-{n}"), 1)).collect()
}

backend_test!(
    async fn issues_and_comments_land_threaded_by_user_id_and_a_reply_is_an_issue_comment(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let github = Github::start().await;
        // Lucía opens an issue; Maya comments naming us; we answer; Dependabot comments;
        // Maya opens a pull request and Lucía comments on it.
        github.add_issue(issue(
            1347,
            LUCIA,
            "CSV export fails",
            "Exporting 20k contacts times out.",
            1,
            false,
        ));
        github.add_comment(comment(
            1_956_013_482,
            MAYA,
            "User",
            1347,
            "@acme-support same here, files over 10 MB fail",
            2,
        ));
        github.add_comment(comment(
            1_956_013_500,
            US,
            "User",
            1347,
            "Looking into it now",
            3,
        ));
        github.add_comment(comment(
            1_956_013_600,
            DEPENDABOT,
            "Bot",
            1347,
            "Bumps csv from 1.3.0 to 1.3.1.",
            4,
        ));
        github.add_issue(issue(
            1350,
            MAYA,
            "Stream the CSV export",
            "Fixes #1347 by streaming rows.",
            5,
            true,
        ));
        github.add_comment(comment(
            1_956_014_001,
            LUCIA,
            "User",
            1350,
            "Works for my 20k contacts.",
            6,
        ));

        let input =
            json!({ "channel": "GITHUB", "name": "acme", "config": github.config(json!({})) });
        let created = app
            .gql(&key, crate::feeds::CREATE, json!({ "input": input }))
            .await;
        let source = &created["createSource"]["source"];
        assert_eq!(source["secretsSet"], json!(["token"]));
        let shown = source["config"].to_string();
        assert!(!shown.contains(TOKEN), "{shown}");
        let id = source["id"].as_str().unwrap().to_owned();

        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        // Two issues and three comments; Dependabot's skipped.
        assert_eq!(report["newItems"], 5, "{report:#}");
        assert_eq!(github.seen("/user").len(), 1);
        let first = &github.comments_seen()[0];
        assert_eq!(header(first, "authorization"), format!("Bearer {TOKEN}"));
        let q = query(first);
        assert_eq!(
            (
                q["direction"].as_str(),
                q["per_page"].as_str(),
                q.get("since")
            ),
            ("desc", "100", None)
        );

        let all = items(&app, &key).await;
        let opened = &all["acme/widgets#1347"];
        assert_eq!(opened["kind"], "POST");
        assert_eq!(opened["channel"], "GITHUB");
        assert_eq!(opened["subject"], "CSV export fails");
        assert_eq!(opened["text"], "Exporting 20k contacts times out.");
        assert_eq!(opened["url"], "https://github.com/acme/widgets/issues/1347");
        assert_eq!(opened["identity"]["platformId"], github.identity(LUCIA.1));
        let named = &all["issuecomment-1956013482"];
        assert_eq!(named["kind"], "MENTION");
        assert_eq!(named["direction"], "INBOUND");
        assert_eq!(named["identity"]["platformId"], github.identity(MAYA.1));
        assert_eq!(named["customer"]["displayName"], "maya-l");
        assert_eq!(
            named["url"],
            "https://github.com/acme/widgets/issues/1347#issuecomment-1956013482"
        );
        let ours = &all["issuecomment-1956013500"];
        assert_eq!(ours["direction"], "OUTBOUND");
        assert_eq!(ours["kind"], "COMMENT");
        assert!(!all.contains_key("issuecomment-1956013600"));
        // Threaded: the issue and its comments are one conversation, the pull request and
        // its comment another.
        let conversation = &opened["conversation"]["id"];
        assert_eq!(named["conversation"]["id"], *conversation);
        assert_eq!(ours["conversation"]["id"], *conversation);
        let pull = &all["acme/widgets#1350"];
        assert_eq!(pull["kind"], "POST");
        assert_eq!(pull["url"], "https://github.com/acme/widgets/pull/1350");
        let on_pull = &all["issuecomment-1956014001"];
        assert_eq!(on_pull["kind"], "COMMENT");
        assert_eq!(on_pull["conversation"]["id"], pull["conversation"]["id"]);
        assert_ne!(pull["conversation"]["id"], *conversation);
        // One person, one customer, by the numeric id.
        assert_eq!(pull["customer"]["id"], named["customer"]["id"]);
        assert_eq!(on_pull["customer"]["id"], opened["customer"]["id"]);
        assert_ne!(opened["customer"]["id"], named["customer"]["id"]);

        // Maya edits her comment: the same id, a later updated_at. It comes again (since is
        // inclusive of later updates) and is not stored twice.
        {
            let mut state = github.state.lock().unwrap();
            let edited = state
                .comments
                .iter_mut()
                .find(|c| c["id"] == 1_956_013_482u64)
                .unwrap();
            edited["body"] = json!("@acme-support same here, files over 10 MB fail (edited)");
            edited["updated_at"] = json!(stamp(minute(30)));
        }
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 0, "{report:#}");
        assert_eq!(report["duplicates"], 1, "{report:#}");
        let q = query(&github.comments_seen()[1]);
        assert_eq!(
            (q["direction"].as_str(), q["since"].as_str()),
            ("asc", "2026-11-02T09:06:00Z")
        );
        assert_eq!(stored_ids(&app).await["issuecomment-1956013482"], 1);

        // A reply from Rapport: a comment on the answered comment's issue.
        let agent = app.key(Role::Agent).await;
        let target = find_interaction(&app, &key, "issuecomment-1956013482").await;
        let text = "Fixed in 2.0.1, see #1350 — thanks @maya-l!";
        let sent = app
            .gql(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": target, "text": text } }),
            )
            .await["replyToInteraction"]["interaction"]
            .clone();
        let posted = github.seen("/repos/acme/widgets/issues/1347/comments");
        assert_eq!(posted.len(), 1);
        assert_eq!(posted[0].method, "POST");
        let body = serde_json::from_slice::<Value>(&posted[0].body).unwrap();
        assert_eq!(body.as_object().unwrap().len(), 1, "{body:#}");
        marked(body["body"].as_str().unwrap(), text);
        assert_eq!(header(&posted[0], "content-type"), "application/json");
        assert_eq!(
            header(&posted[0], "authorization"),
            format!("Bearer {TOKEN}")
        );
        assert_eq!(sent["externalId"], "issuecomment-3000000001");
        assert_eq!(sent["direction"], "OUTBOUND");
        assert_eq!(sent["text"], text);
        assert_eq!(
            sent["url"],
            "https://github.com/acme/widgets/issues/1347#issuecomment-3000000001"
        );
        assert_eq!(sent["conversation"]["id"], *conversation);
        // The pull request's opening post is answered on the pull request.
        let target = find_interaction(&app, &key, "acme/widgets#1350").await;
        let sent = app
            .gql(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": target, "text": "Merged, thanks!" } }),
            )
            .await["replyToInteraction"]["interaction"]
            .clone();
        assert_eq!(sent["externalId"], "issuecomment-3000000002");
        assert_eq!(sent["conversation"]["id"], pull["conversation"]["id"]);
        assert_eq!(
            github
                .seen("/repos/acme/widgets/issues/1350/comments")
                .len(),
            1
        );

        // Our replies come back in the listing: stored already.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 0, "{report:#}");
        assert_eq!(stored_ids(&app).await["issuecomment-3000000001"], 1);

        // GitHub made the comment but the answer was lost (502): the issue's comments since
        // shortly before are read back, ours with this text is the reply. Posted once.
        let target = find_interaction(&app, &key, "issuecomment-1956013482").await;
        github.state.lock().unwrap().lose = 1;
        let sent = app
            .gql(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": target, "text": "Released 2.0.2 as well." } }),
            )
            .await["replyToInteraction"]["interaction"]
            .clone();
        assert_eq!(sent["externalId"], "issuecomment-3000000003", "{sent:#}");
        let read = github.seen("/repos/acme/widgets/issues/1347/comments");
        let read: Vec<&Seen> = read.iter().filter(|s| s.method == "GET").collect();
        assert_eq!(read.len(), 1);
        let since: DateTime<Utc> = query(read[0])["since"].parse().unwrap();
        assert!(since <= Utc::now() - Duration::minutes(14), "{since}");
        assert_eq!(github.state.lock().unwrap().posted, 3);
        // A 502 before anything was made: none of our comments has this text, so the reply
        // fails with the 502 and nothing is taken for it.
        github.state.lock().unwrap().down = 1;
        let (_, answer) = app
            .gql_error(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": target, "text": "Released 2.0.3." } }),
            )
            .await;
        assert!(answer.to_string().contains("502"), "{answer:#}");
        assert_eq!(github.state.lock().unwrap().posted, 3);
        assert!(!stored_ids(&app)
            .await
            .contains_key("issuecomment-3000000004"));
        let target = find_interaction(&app, &key, "acme/widgets#1350").await;

        // Over 65,536 characters: refused before anything is sent.
        let long = json!({ "interactionId": target, "text": "a".repeat(65_537) });
        let (code, _) = app.gql_error(&agent, REPLY, json!({ "input": long })).await;
        assert_eq!(code, "BAD_USER_INPUT");
        assert_eq!(
            github
                .seen("/repos/acme/widgets/issues/1350/comments")
                .len(),
            1
        );
    }
);

backend_test!(
    async fn a_first_sync_backfills_over_pages_then_takes_only_new_comments(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let github = Github::start().await;
        github.fans(0..250, None);
        let id = github
            .source(&app, &key, "backfill", json!({ "backfill_limit": 120 }))
            .await;

        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 120, "{report:#}");
        assert_eq!(stored_ids(&app).await, expected(130..250));
        // Back from the newest: a page, then the next as the Link header says.
        let seen = github.comments_seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(query(&seen[0]).get("page"), None);
        assert_eq!(query(&seen[1])["page"], "2");
        assert_eq!(query(&seen[1])["direction"], "desc");
        let cursor: Value =
            serde_json::from_str(report["source"]["cursor"].as_str().unwrap()).unwrap();
        let stream = &cursor["streams"]["acme/widgets/comments"];
        assert_eq!(stream["mark"]["at"], minute(249).timestamp());
        assert_eq!(stream["mark"]["ids"], json!(["249"]));
        assert_eq!(stream.get("walk"), None);

        // New comments: only those, from the mark.
        github.fans(250..280, None);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 30, "{report:#}");
        let seen = github.comments_seen();
        assert_eq!(seen.len(), 3);
        assert_eq!(query(&seen[2])["since"], stamp(minute(249)));
        assert_eq!(query(&seen[2])["direction"], "asc");
        // More than a page: the second request starts from where the first page moved the
        // mark, not from the first request's page 2.
        github.fans(280..430, None);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 150, "{report:#}");
        let seen = github.comments_seen();
        assert_eq!(seen.len(), 5);
        assert_eq!(query(&seen[4])["since"], stamp(minute(378)));
        assert_eq!(query(&seen[4]).get("page"), None);
        assert_eq!(stored_ids(&app).await, expected(130..430));
        assert_eq!(sync(&app, &key, &id).await["newItems"], 0);

        // 150 comments in one second (an import): the page within the mark's second follows
        // its Link to page 2; none lost, none twice.
        github.fans(1_000..1_150, Some(500));
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 150, "{report:#}");
        let seen = github.comments_seen();
        assert!(
            seen.iter()
                .any(|s| query(s).get("page").map(String::as_str) == Some("2")
                    && query(s).get("since").map(String::as_str) == Some(&stamp(minute(500)))),
            "{seen:?}"
        );
        let mut all = expected(130..430);
        all.extend(expected(1_000..1_150));
        assert_eq!(stored_ids(&app).await, all);
        assert_eq!(sync(&app, &key, &id).await["newItems"], 0);

        // backfill_limit 0: the first sync only sets the mark.
        let fresh = Github::start().await;
        fresh.fans(0..50, None);
        let id = fresh
            .source(&app, &key, "new only", json!({ "backfill_limit": 0 }))
            .await;
        assert_eq!(sync(&app, &key, &id).await["newItems"], 0);
        assert_eq!(query(&fresh.comments_seen()[0])["per_page"], "1");
        fresh.fans(50..53, None);
        assert_eq!(sync(&app, &key, &id).await["newItems"], 3);
    }
);

backend_test!(
    async fn rate_limits_set_the_next_run_a_bad_token_fails_and_a_missing_repository_warns(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let github = Github::start().await;
        github.fans(0..3, None);
        // acme/gone: deleted, or invisible to the token; acme/private: visible, but the
        // fine-grained token was not given it.
        let docs = "https://docs.github.com/rest/issues/issues#list-repository-issues";
        for path in [
            "/repos/acme/gone/issues",
            "/repos/acme/gone/issues/comments",
        ] {
            github.server.on(path, vec![error(404, "Not Found", docs)]);
        }
        for path in [
            "/repos/acme/private/issues",
            "/repos/acme/private/issues/comments",
        ] {
            let refused = error(
                403,
                "Resource not accessible by personal access token",
                docs,
            );
            github.server.on(path, vec![github.limited(refused, false)]);
        }
        // Every 30 s, so a minute's wait is later than the next scheduled run.
        let input = json!({ "channel": "GITHUB", "name": "limits", "scheduleSecs": 30,
            "config": github.config(json!({ "repositories": [REPO, "acme/gone", "acme/private"] })) });
        let id = app
            .gql(&key, crate::feeds::CREATE, json!({ "input": input }))
            .await["createSource"]["source"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 3, "{report:#}");
        assert_eq!(report["source"]["status"], "OK", "{report:#}");
        let cursor: Value =
            serde_json::from_str(&source_row(&app, &id).await.cursor.unwrap()).unwrap();
        let warning = cursor["streams"]["acme/gone/comments"]["warning"]
            .as_str()
            .unwrap();
        assert!(warning.contains("404"), "{warning}");
        let warning = cursor["streams"]["acme/private/issues"]["warning"]
            .as_str()
            .unwrap();
        assert!(
            warning.contains("403") && warning.contains("no access"),
            "{warning}"
        );
        let warning = cursor["streams"]["acme/gone/discussions"]["warning"]
            .as_str()
            .unwrap();
        assert!(warning.contains("NOT_FOUND"), "{warning}");
        assert_eq!(
            cursor["streams"]["acme/widgets/comments"].get("warning"),
            None
        );
        assert_eq!(
            cursor["streams"]["acme/widgets/discussions"].get("warning"),
            None
        );

        // The primary limit spent (x-ratelimit-remaining 0, reset in 20 minutes): the page
        // is stored and the next run waits for the reset.
        github.state.lock().unwrap().exhausted = true;
        github.fans(3..4, None);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 1, "{report:#}");
        assert_eq!(report["source"]["status"], "RATE_LIMITED", "{report:#}");
        let next: DateTime<Utc> = report["source"]["nextRunAt"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(next >= Utc::now() + Duration::minutes(19), "{next}");
        assert!(next <= Utc::now() + Duration::minutes(21), "{next}");
        github.state.lock().unwrap().exhausted = false;

        // A secondary limit: 403 with GitHub's message and no retry-after: at least a minute.
        let secondary = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 8C2A:2B1F:3F0E1A:7E4B5C:6750A1B2.";
        let secondary_docs = "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits";
        github.state.lock().unwrap().throttle = vec![error(403, secondary, secondary_docs)];
        github.fans(4..5, None);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["source"]["status"], "RATE_LIMITED", "{report:#}");
        let next: DateTime<Utc> = report["source"]["nextRunAt"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(next >= Utc::now() + Duration::seconds(55), "{next}");
        assert!(next <= Utc::now() + Duration::minutes(5), "{next}");
        // 429 with retry-after: that long.
        github.state.lock().unwrap().throttle =
            vec![error(429, secondary, secondary_docs).header("retry-after", "600")];
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["source"]["status"], "RATE_LIMITED", "{report:#}");
        let next: DateTime<Utc> = report["source"]["nextRunAt"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(next >= Utc::now() + Duration::minutes(9), "{next}");
        assert!(next <= Utc::now() + Duration::minutes(11), "{next}");
        // Nothing lost meanwhile.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 1, "{report:#}");
        assert_eq!(stored_ids(&app).await, expected(0..5));

        // GraphQL's budget spent (RATE_LIMITED, x-ratelimit-remaining 0): the reset is
        // awaited.
        github.state.lock().unwrap().graphql_exhausted = true;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["source"]["status"], "RATE_LIMITED", "{report:#}");
        let next: DateTime<Utc> = report["source"]["nextRunAt"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(next >= Utc::now() + Duration::minutes(19), "{next}");
        github.state.lock().unwrap().graphql_exhausted = false;

        // A wrong token: 401 Bad credentials fails the source, never showing the token.
        let wrong = github
            .source(
                &app,
                &key,
                "wrong",
                json!({ "token": "github_pat_wrong-token-0000" }),
            )
            .await;
        let report = sync(&app, &key, &wrong).await;
        assert_eq!(report["source"]["status"], "FAILING", "{report:#}");
        let error = report["source"]["lastError"].as_str().unwrap();
        assert!(
            error.contains("401") && error.contains("Bad credentials"),
            "{error}"
        );
        assert!(!error.contains("wrong-token"), "{error}");

        // Every repository missing: the sync fails, saying so.
        let gone = github
            .source(&app, &key, "gone", json!({ "repositories": ["acme/gone"] }))
            .await;
        let report = sync(&app, &key, &gone).await;
        assert_eq!(report["source"]["status"], "BACKING_OFF", "{report:#}");
        let error = report["source"]["lastError"].as_str().unwrap();
        assert!(error.contains("404"), "{error}");
    }
);

backend_test!(
    async fn an_interrupted_backfill_resumes_from_its_next_link(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let github = Github::start().await;
        github.fans(0..1_300, None);
        let id = github
            .source(&app, &key, "resumed", json!({ "backfill_limit": 1_200 }))
            .await;
        // One batch, then the run is stopped: the newest thousand comments are stored with a
        // cursor whose walk goes on at the next page.
        let syncer = rapport::ingest::sync::Syncer::new(&app.app);
        let claimed = syncer.claim(&source_row(&app, &id).await).await.unwrap();
        let report = syncer.run(claimed, &|| true).await.unwrap();
        assert_eq!(report.batches, 1, "{report:?}");
        assert_eq!(stored_ids(&app).await, expected(300..1_300));
        let cursor: Value =
            serde_json::from_str(&source_row(&app, &id).await.cursor.unwrap()).unwrap();
        let walk = &cursor["streams"]["acme/widgets/comments"]["walk"];
        assert_eq!(walk["left"], 200);
        let next = walk["next"].as_str().unwrap();
        assert!(
            next.starts_with(&github.server.url("/repos/acme/widgets/issues/comments?"))
                && next.contains("page=11"),
            "{next}"
        );
        assert_eq!(walk["top"]["at"], minute(1_299).timestamp());

        // The next sync goes on from there down to the limit, then follows new ones.
        let (new, _) = crate::mastodon::sync_until_done(&app, &id).await;
        assert_eq!(new, 200);
        let seen = github.comments_seen();
        assert_eq!(query(&seen[10])["page"], "11");
        assert_eq!(stored_ids(&app).await, expected(100..1_300));
        let cursor: Value =
            serde_json::from_str(&source_row(&app, &id).await.cursor.unwrap()).unwrap();
        let stream = &cursor["streams"]["acme/widgets/comments"];
        assert_eq!(stream.get("walk"), None);
        assert_eq!(stream["mark"]["ids"], json!(["1299"]));
        github.fans(1_300..1_302, None);
        assert_eq!(sync(&app, &key, &id).await["newItems"], 2);
    }
);

backend_test!(
    async fn discussions_comments_and_replies_are_one_conversation_and_replies_nest(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let github = Github::start().await;
        // Lucía starts a discussion; Maya comments naming us; we reply to Maya; a bot
        // comments; Lucía replies to Maya. Maya also starts one of her own, and comments on
        // an issue (one person on both APIs).
        let mut roadmap = discussion(7, LUCIA, "Roadmap for exports", "What comes after CSV?", 10);
        let mut maya = discussion_comment(
            "DC_kwDOKx3Y5s4AhM01",
            7,
            MAYA,
            "User",
            "@acme-support Parquet please",
            11,
        );
        let mut ours = discussion_comment(
            "DC_kwDOKx3Y5s4AhM02",
            7,
            US,
            "User",
            "On the list for 2.1",
            12,
        );
        ours["replyTo"] = json!({ "id": "DC_kwDOKx3Y5s4AhM01" });
        let mut lucia = discussion_comment(
            "DC_kwDOKx3Y5s4AhM03",
            7,
            LUCIA,
            "User",
            "+1 for Parquet",
            13,
        );
        lucia["replyTo"] = json!({ "id": "DC_kwDOKx3Y5s4AhM01" });
        maya["replies"]["nodes"] = json!([ours, lucia]);
        let bot = discussion_comment(
            "DC_kwDOKx3Y5s4AhM04",
            7,
            ("github-actions", 41_898_282),
            "Bot",
            "Labelled: roadmap",
            13,
        );
        roadmap["comments"]["nodes"] = json!([maya, bot]);
        roadmap["updatedAt"] = json!(stamp(minute(13)));
        // And 25 older ones, more than a page.
        let mut discussions = vec![roadmap, discussion(8, MAYA, "Dark mode?", "", 20)];
        for n in 0..25 {
            let fan = (&format!("fan-{n}") as &str, 100_000 + n);
            discussions.push(discussion(
                100 + n,
                fan,
                "Question",
                "How do I…",
                n as i64 - 30,
            ));
        }
        github.state.lock().unwrap().discussions = discussions;
        github.add_comment(comment(1_956_020_000, MAYA, "User", 1347, "Any news?", 21));
        let id = github.source(&app, &key, "discussions", json!({})).await;

        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        // 27 discussions, three comments and replies (the bot's skipped), one issue comment.
        assert_eq!(report["newItems"], 31, "{report:#}");
        let asked = github.seen("/graphql");
        assert_eq!(asked.len(), 2);
        let request: Value = serde_json::from_slice(&asked[0].body).unwrap();
        assert_eq!(
            request["variables"],
            json!({ "owner": "acme", "name": "widgets", "first": 20, "after": null, "comments": 50, "replies": 20 })
        );
        assert_eq!(
            header(&asked[0], "authorization"),
            format!("Bearer {TOKEN}")
        );

        let all = items(&app, &key).await;
        let started = &all["D_kwDOKx3Y5s4AXy7"];
        assert_eq!(started["kind"], "POST");
        assert_eq!(started["subject"], "Roadmap for exports");
        assert_eq!(
            started["url"],
            "https://github.com/acme/widgets/discussions/7"
        );
        assert_eq!(started["identity"]["platformId"], github.identity(LUCIA.1));
        let named = &all["DC_kwDOKx3Y5s4AhM01"];
        assert_eq!(named["kind"], "MENTION");
        assert_eq!(named["identity"]["platformId"], github.identity(MAYA.1));
        let ours = &all["DC_kwDOKx3Y5s4AhM02"];
        assert_eq!(ours["direction"], "OUTBOUND");
        let answer = &all["DC_kwDOKx3Y5s4AhM03"];
        assert_eq!(answer["kind"], "COMMENT");
        assert!(!all.contains_key("DC_kwDOKx3Y5s4AhM04"));
        let conversation = &started["conversation"]["id"];
        for item in [named, ours, answer] {
            assert_eq!(item["conversation"]["id"], *conversation, "{item:#}");
        }
        let dark = &all["D_kwDOKx3Y5s4AXy8"];
        assert_eq!(dark["text"], "Dark mode?");
        assert_ne!(dark["conversation"]["id"], *conversation);
        // Maya is one customer on discussions and issues: the same numeric id.
        assert_eq!(dark["customer"]["id"], named["customer"]["id"]);
        assert_eq!(
            all["issuecomment-1956020000"]["customer"]["id"],
            named["customer"]["id"]
        );

        let request: Value = serde_json::from_slice(&asked[1].body).unwrap();
        assert_eq!(request["variables"]["after"], "Y3Vyc29y:20");

        // Nothing new: one request, whose first discussion is the mark.
        assert_eq!(sync(&app, &key, &id).await["newItems"], 0);
        assert_eq!(github.seen("/graphql").len(), 3);

        // A reply to Lucía's reply nests under Maya's comment (GitHub nests one level).
        let agent = app.key(Role::Agent).await;
        let target = find_interaction(&app, &key, "DC_kwDOKx3Y5s4AhM03").await;
        let sent = app
            .gql(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": target, "text": "Parquet lands in 2.1." } }),
            )
            .await["replyToInteraction"]["interaction"]
            .clone();
        let asked = github.seen("/graphql");
        let mutation: Value = serde_json::from_slice(&asked[3].body).unwrap();
        assert!(
            mutation["query"]
                .as_str()
                .unwrap()
                .starts_with("mutation($discussionId: ID!, $body: String!, $replyToId: ID)"),
            "{mutation:#}"
        );
        let mut variables = mutation["variables"].clone();
        marked(variables["body"].as_str().unwrap(), "Parquet lands in 2.1.");
        variables["body"] = json!("Parquet lands in 2.1.");
        assert_eq!(
            variables,
            json!({ "discussionId": "D_kwDOKx3Y5s4AXy7", "body": "Parquet lands in 2.1.", "replyToId": "DC_kwDOKx3Y5s4AhM01" })
        );
        assert_eq!(sent["externalId"], "DC_kwDOKx3Y5s4AhNEW1");
        assert_eq!(sent["direction"], "OUTBOUND");
        assert_eq!(sent["conversation"]["id"], *conversation);
        // Answering a discussion itself is a top-level comment.
        let target = find_interaction(&app, &key, "D_kwDOKx3Y5s4AXy8").await;
        app.gql(
            &agent,
            REPLY,
            json!({ "input": { "interactionId": target, "text": "Yes, in 2.2." } }),
        )
        .await;
        let mutation: Value = serde_json::from_slice(&github.seen("/graphql")[4].body).unwrap();
        assert_eq!(mutation["variables"]["discussionId"], "D_kwDOKx3Y5s4AXy8");
        assert_eq!(mutation["variables"]["replyToId"], Value::Null);

        // Our comments come back with the discussions they moved: stored already; a new
        // comment of Lucía's is the only new item.
        {
            let mut state = github.state.lock().unwrap();
            let roadmap = &mut state.discussions[0];
            let late = discussion_comment("DC_kwDOKx3Y5s4AhM05", 7, LUCIA, "User", "Any date?", 0);
            let mut late = late;
            let now = stamp(Utc::now() + Duration::seconds(5));
            late["createdAt"] = json!(now);
            late["updatedAt"] = json!(now);
            roadmap["comments"]["nodes"]
                .as_array_mut()
                .unwrap()
                .push(late);
            roadmap["updatedAt"] = json!(now);
        }
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 1, "{report:#}");
        assert_eq!(stored_ids(&app).await["DC_kwDOKx3Y5s4AhNEW1"], 1);
        assert_eq!(
            items(&app, &key).await["DC_kwDOKx3Y5s4AhM05"]["conversation"]["id"],
            *conversation
        );
    }
);

backend_test!(
    async fn a_page_over_the_size_cap_is_read_in_smaller_pages_and_a_lone_huge_item_skipped(
        app: TestApp,
    ) {
        // 60 spam comments of about 256 KiB each: a page of 100 (or 50 of them) is over the
        // 10 MiB cap, a page of 25 is not. Comment 200 alone is over it.
        let key = app.key(Role::Admin).await;
        let github = Github::start().await;
        github.fans(0..300, None);
        {
            let mut state = github.state.lock().unwrap();
            state.big = (100..160).collect();
            state.huge = vec![200];
            // Twelve long discussions: a page of more than five is over the cap.
            state.discussions = (0..12)
                .map(|n| discussion(100 + n, MAYA, "Long", "…", n as i64))
                .collect();
            state.discussions_cap = Some(5);
        }
        let id = github.source(&app, &key, "spam", json!({})).await;
        let (new, _) = crate::mastodon::sync_until_done(&app, &id).await;
        // Every comment but the huge one, each once, and every discussion.
        let mut all = expected(0..300);
        all.remove("issuecomment-200");
        for n in 0..12 {
            all.insert(format!("D_kwDOKx3Y5s4AXy{}", 100 + n), 1);
        }
        assert_eq!(new, 299 + 12);
        assert_eq!(stored_ids(&app).await, all);
        let firsts: Vec<u64> = github
            .seen("/graphql")
            .iter()
            .map(|seen| {
                serde_json::from_slice::<Value>(&seen.body).unwrap()["variables"]["first"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(firsts[..4], [20, 10, 5, 5], "{firsts:?}");
        let sizes: Vec<String> = github
            .comments_seen()
            .iter()
            .map(|seen| query(seen)["per_page"].clone())
            .collect();
        for size in ["100", "50", "25", "5", "1"] {
            assert!(sizes.iter().any(|s| s == size), "{size}: {sizes:?}");
        }
        let cursor: Value =
            serde_json::from_str(&source_row(&app, &id).await.cursor.unwrap()).unwrap();
        let stream = &cursor["streams"]["acme/widgets/comments"];
        assert_eq!(stream.get("walk"), None, "{stream:#}");
        assert_eq!(stream["mark"]["ids"], json!(["299"]));

        // Forward from the mark: new spam makes the page from the mark too large; smaller
        // pages read it, then the stream is caught up and back to pages of 100.
        github.fans(300..400, None);
        github.state.lock().unwrap().big.extend(300..360);
        let asked = github.comments_seen().len();
        let (new, _) = crate::mastodon::sync_until_done(&app, &id).await;
        assert_eq!(new, 100);
        let seen = github.comments_seen();
        let forward: Vec<&Seen> = seen[asked..].iter().collect();
        assert!(forward.iter().all(|s| query(s).contains_key("since")));
        assert_eq!(query(forward[0])["per_page"], "100");
        assert_eq!(query(forward[1])["per_page"], "50");
        github.fans(400..402, None);
        assert_eq!(sync(&app, &key, &id).await["newItems"], 2);
        let last = github.comments_seen();
        assert_eq!(query(last.last().unwrap())["per_page"], "100");
        let mut all = expected(0..402);
        all.remove("issuecomment-200");
        for n in 0..12 {
            all.insert(format!("D_kwDOKx3Y5s4AXy{}", 100 + n), 1);
        }
        assert_eq!(stored_ids(&app).await, all);

        // A lone huge item in the forward read: skipped with a warning, the rest read.
        github.fans(402..405, None);
        github.state.lock().unwrap().huge.push(403);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 2, "{report:#}");
        let cursor: Value =
            serde_json::from_str(&source_row(&app, &id).await.cursor.unwrap()).unwrap();
        let warning = cursor["streams"]["acme/widgets/comments"]["warning"]
            .as_str()
            .unwrap();
        assert!(warning.contains("skipped"), "{warning}");
        github.fans(405..406, None);
        assert_eq!(sync(&app, &key, &id).await["newItems"], 1);
    }
);

backend_test!(
    async fn a_next_link_off_the_api_ends_the_backfill_and_base_url_is_compared_normalised(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let github = Github::start().await;
        github.fans(0..250, None);
        // The server names itself `localhost` in its links; the source reaches it as
        // 127.0.0.1. The link is refused and the backfill ends at the first page, with a
        // warning, instead of failing on every pull.
        github.state.lock().unwrap().link_host = Some("localhost".into());
        let id = github.source(&app, &key, "elsewhere", json!({})).await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 100, "{report:#}");
        let cursor: Value =
            serde_json::from_str(&source_row(&app, &id).await.cursor.unwrap()).unwrap();
        let stream = &cursor["streams"]["acme/widgets/comments"];
        assert_eq!(stream.get("walk"), None, "{stream:#}");
        let warning = stream["warning"].as_str().unwrap();
        assert!(warning.contains("outside"), "{warning}");
        // New comments are read forward from the mark.
        github.fans(250..253, None);
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 3, "{report:#}");
        let seen = github.comments_seen();
        assert_eq!(query(seen.last().unwrap())["since"], stamp(minute(249)));
        assert!(
            seen.iter().all(|s| !query(s).contains_key("page")),
            "{seen:?}"
        );

        // base_url typed in another case, with a trailing slash: the links are the API's.
        let github = Github::start().await;
        github.fans(0..150, None);
        let typed = format!("{}/", github.server.base.replacen("http://", "HTTP://", 1));
        let id = github
            .source(&app, &key, "typed", json!({ "base_url": typed }))
            .await;
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["newItems"], 150, "{report:#}");
        assert_eq!(github.comments_seen().len(), 2);
    }
);

backend_test!(
    async fn a_lost_answer_is_read_back_by_the_replys_own_marker_never_a_twin_with_the_same_text(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let github = Github::start().await;
        github.add_issue(issue(
            1347,
            LUCIA,
            "CSV export fails",
            "Times out.",
            1,
            false,
        ));
        github.add_comment(comment(10, MAYA, "User", 1347, "Same here", 2));
        github.add_comment(comment(11, LUCIA, "User", 1347, "And here", 3));
        let id = github.source(&app, &key, "twins", json!({})).await;
        assert_eq!(sync(&app, &key, &id).await["newItems"], 3);
        let agent = app.key(Role::Agent).await;
        let saved = "Thanks, fixed in 2.0.1";
        // The saved reply to Maya: sent.
        let maya = find_interaction(&app, &key, "issuecomment-10").await;
        let first = app
            .gql(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": maya, "text": saved } }),
            )
            .await["replyToInteraction"]["interaction"]
            .clone();
        assert_eq!(first["externalId"], "issuecomment-3000000001");
        // The same words to Lucía, and GitHub fails before making it (502): Maya's comment
        // has the same text but not this reply's marker. The reply fails, nothing is
        // taken for it.
        let lucia = find_interaction(&app, &key, "issuecomment-11").await;
        github.state.lock().unwrap().down = 1;
        let (_, answer) = app
            .gql_error(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": lucia, "text": saved } }),
            )
            .await;
        assert!(answer.to_string().contains("502"), "{answer:#}");
        assert_eq!(github.state.lock().unwrap().posted, 1);
        assert_eq!(stored_ids(&app).await["issuecomment-3000000001"], 1);

        // 120 comments of ours with those words since (a busy day of saved replies), then
        // the answer to Lucía's is lost after GitHub made it: the read-back pages past the
        // first 100 to the one with its marker.
        for n in 0..120 {
            let mut twin = comment(4_000_000 + n, US, "User", 1347, saved, 0);
            let now = stamp(Utc::now());
            twin["created_at"] = json!(now);
            twin["updated_at"] = json!(now);
            github.add_comment(twin);
        }
        github.state.lock().unwrap().lose = 1;
        let sent = app
            .gql(
                &agent,
                REPLY,
                json!({ "input": { "interactionId": lucia, "text": saved } }),
            )
            .await["replyToInteraction"]["interaction"]
            .clone();
        assert_eq!(sent["externalId"], "issuecomment-3000000002", "{sent:#}");
        assert_eq!(sent["text"], saved);
        let read: Vec<Seen> = github
            .seen("/repos/acme/widgets/issues/1347/comments")
            .into_iter()
            .filter(|s| s.method == "GET")
            .collect();
        // One read after the 502, two pages now.
        assert_eq!(read.len(), 3);
        assert_eq!(query(&read[2])["page"], "2");
        // The comment comes back in the listing without its marker in the text.
        let posted: Vec<Value> = github.state.lock().unwrap().comments.clone();
        let made = posted.iter().find(|c| c["id"] == 3_000_000_002u64).unwrap();
        marked(made["body"].as_str().unwrap(), saved);
    }
);

backend_test!(
    async fn one_pull_takes_about_one_budget_of_items_across_all_streams(app: TestApp) {
        // 950 issues and 200 comments: the issues take most of the pull's 1,000 items, so
        // the comments get one page and the rest waits for the next batch.
        let key = app.key(Role::Admin).await;
        let github = Github::start().await;
        for n in 1..=950 {
            github.add_issue(issue(n, MAYA, "Export", "It fails", n as i64, false));
        }
        github.fans(0..200, None);
        let id = github
            .source(&app, &key, "budget", json!({ "backfill_limit": 5_000 }))
            .await;
        let syncer = rapport::ingest::sync::Syncer::new(&app.app);
        let claimed = syncer.claim(&source_row(&app, &id).await).await.unwrap();
        let report = syncer.run(claimed, &|| true).await.unwrap();
        assert_eq!(report.batches, 1, "{report:?}");
        assert_eq!(report.new, 1_050, "{report:?}");
        let (new, _) = crate::mastodon::sync_until_done(&app, &id).await;
        assert_eq!(new, 100);
        assert_eq!(stored_ids(&app).await.len(), 1_150);
    }
);

const HOOK_SECRET: &str = "wh-acme-widgets-3f9c2e71b8d4";
const CREATE_HOOKED: &str = "mutation($input: CreateSourceInput!) { createSource(input: $input) { source { id config secretsSet webhookPath } } }";

/// The repository as webhook payloads embed it.
fn repository(full_name: &str) -> Value {
    let (owner, name) = full_name.split_once('/').unwrap();
    json!({
        "id": 735_001_234, "node_id": "R_kgDOKx3Y5s", "name": name, "full_name": full_name,
        "private": false, "owner": user((owner, 120_001), "Organization"),
        "html_url": format!("https://github.com/{full_name}"), "description": "Widgets",
        "fork": false, "url": format!("https://api.github.com/repos/{full_name}"),
        "created_at": "2019-03-01T10:00:00Z", "updated_at": "2026-11-01T10:00:00Z",
        "pushed_at": "2026-11-01T10:00:00Z", "default_branch": "main",
        "has_issues": true, "has_discussions": true, "visibility": "public"
    })
}

/// A webhook payload: `action`, the event's objects, `repository` and `sender`.
fn event_payload(action: &str, objects: Value, repo: &str, sender: (&str, u64)) -> Value {
    let mut payload = json!({ "action": action, "repository": repository(repo),
        "sender": user(sender, "User") });
    for (key, value) in objects.as_object().unwrap() {
        payload[key] = value.clone();
    }
    payload
}

/// POSTs `body` as GitHub delivers a webhook (its documented headers), signed with
/// `signature` (none: unsigned). The status and the answer.
async fn deliver_raw(
    app: &TestApp,
    path: &str,
    event: &str,
    signature: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url(path))
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/7f4e5a1")
        .header("x-github-event", event)
        .header("x-github-delivery", uuid::Uuid::now_v7().to_string())
        .header("x-github-hook-id", "512345678")
        .header("x-github-hook-installation-target-id", "735001234")
        .header("x-github-hook-installation-target-type", "repository");
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    let response = request.body(body.to_owned()).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert!(!text.contains(HOOK_SECRET), "{text}");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Delivers `payload` as GitHub does, signed with `secret`.
async fn deliver_signed(
    app: &TestApp,
    path: &str,
    event: &str,
    secret: &str,
    payload: &Value,
) -> (u16, Value) {
    let body = payload.to_string();
    let signature = connectors::webhook::Secret::parse(secret)
        .unwrap()
        .sign_github(body.as_bytes());
    deliver_raw(app, path, event, Some(&signature), &body).await
}

async fn create_hooked(app: &TestApp, key: &str, name: &str, config: Value) -> Value {
    let input = json!({ "channel": "GITHUB", "name": name, "config": config });
    app.gql(key, CREATE_HOOKED, json!({ "input": input })).await["createSource"]["source"].clone()
}

backend_test!(
    async fn webhook_deliveries_are_the_items_a_pull_makes_and_only_signed_ones_are_taken(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let github = Github::start().await;
        let opened = issue(
            1347,
            LUCIA,
            "CSV export fails",
            "Exporting 20k contacts times out.",
            1,
            false,
        );
        let maya = comment(
            1_956_013_482,
            MAYA,
            "User",
            1347,
            "@acme-support same here, files over 10 MB fail",
            2,
        );
        let ours = comment(1_956_013_500, US, "User", 1347, "Looking into it now", 3);
        github.add_issue(opened.clone());
        github.add_comment(maya.clone());
        github.add_comment(ours.clone());

        let source = create_hooked(
            &app,
            &key,
            "acme",
            github.config(json!({ "webhook_secret": HOOK_SECRET })),
        )
        .await;
        let id = source["id"].as_str().unwrap().to_owned();
        let mut secrets: Vec<String> =
            serde_json::from_value(source["secretsSet"].clone()).unwrap();
        secrets.sort();
        assert_eq!(secrets, ["token", "webhook_secret"]);
        assert!(
            !source["config"].to_string().contains(HOOK_SECRET),
            "{source}"
        );
        let path = format!("/webhooks/{id}");
        assert_eq!(source["webhookPath"], path.as_str());
        let listed = app
            .gql(&key, "{ sources { config secretsSet } }", json!({}))
            .await;
        assert!(!listed.to_string().contains(HOOK_SECRET), "{listed}");

        // GitHub pings a new webhook: answered, nothing stored.
        let ping = json!({ "zen": "Keep it logically awesome.", "hook_id": 512_345_678,
            "hook": { "type": "Repository", "id": 512_345_678, "active": true,
                "events": ["issues", "issue_comment", "discussion", "discussion_comment"],
                "config": { "content_type": "json", "insecure_ssl": "0",
                    "url": "https://crm.example/webhooks/x" } },
            "repository": repository(REPO), "sender": user(US, "User") });
        let (status, answer) = deliver_signed(&app, &path, "ping", HOOK_SECRET, &ping).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["accepted"], true);
        assert!(
            answer["ignored"].as_str().unwrap().contains("ping"),
            "{answer}"
        );
        assert!(stored_ids(&app).await.is_empty());
        assert!(github.seen("/user").is_empty());

        // The issue and Maya's comment naming us arrive as webhooks.
        let (status, answer) = deliver_signed(
            &app,
            &path,
            "issues",
            HOOK_SECRET,
            &event_payload("opened", json!({ "issue": opened }), REPO, LUCIA),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer["interactionId"].is_string(), "{answer}");
        let commented = event_payload(
            "created",
            json!({ "issue": opened, "comment": maya }),
            REPO,
            MAYA,
        );
        let (status, answer) =
            deliver_signed(&app, &path, "issue_comment", HOOK_SECRET, &commented).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            (answer["accepted"].clone(), answer["duplicate"].clone()),
            (json!(true), json!(false))
        );
        let interaction = answer["interactionId"].as_str().unwrap().to_owned();
        assert_eq!(github.seen("/user").len(), 1);
        let all = items(&app, &key).await;
        let named = &all["issuecomment-1956013482"];
        assert_eq!(named["kind"], "MENTION");
        assert_eq!(named["direction"], "INBOUND");
        assert_eq!(named["channel"], "GITHUB");
        assert_eq!(named["identity"]["platformId"], github.identity(MAYA.1));
        assert_eq!(named["customer"]["displayName"], "maya-l");
        assert_eq!(
            named["text"],
            "@acme-support same here, files over 10 MB fail"
        );
        assert_eq!(
            named["url"],
            "https://github.com/acme/widgets/issues/1347#issuecomment-1956013482"
        );
        assert_eq!(
            named["conversation"]["id"],
            all["acme/widgets#1347"]["conversation"]["id"]
        );
        assert_eq!(all["acme/widgets#1347"]["kind"], "POST");
        assert_eq!(
            find_interaction(&app, &key, "issuecomment-1956013482").await,
            interaction
        );

        // A replay is stored once.
        let (status, answer) =
            deliver_signed(&app, &path, "issue_comment", HOOK_SECRET, &commented).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            (answer["duplicate"].clone(), answer["interactionId"].clone()),
            (json!(true), Value::Null)
        );

        // Our own comment, delivered, is outbound as pulled.
        let (status, _) = deliver_signed(
            &app,
            &path,
            "issue_comment",
            HOOK_SECRET,
            &event_payload(
                "created",
                json!({ "issue": opened, "comment": ours }),
                REPO,
                US,
            ),
        )
        .await;
        assert_eq!(status, 200);
        let all = items(&app, &key).await;
        assert_eq!(all["issuecomment-1956013500"]["direction"], "OUTBOUND");
        assert_eq!(all["issuecomment-1956013500"]["kind"], "COMMENT");
        let before = stored_ids(&app).await;
        assert_eq!(before.len(), 3);

        // Unsigned, tampered, or signed with another secret: 401, nothing stored.
        let body = json!({ "action": "created", "issue": opened,
            "comment": comment(1_956_013_777, MAYA, "User", 1347, "forged", 4),
            "repository": repository(REPO), "sender": user(MAYA, "User") })
        .to_string();
        let (status, answer) = deliver_raw(&app, &path, "issue_comment", None, &body).await;
        assert_eq!(
            (status, answer["errors"][0]["extensions"]["code"].as_str()),
            (401, Some("UNAUTHENTICATED")),
            "{answer}"
        );
        let signature = connectors::webhook::Secret::parse(HOOK_SECRET)
            .unwrap()
            .sign_github(body.as_bytes());
        let tampered = body.replace("forged", "forgeD");
        assert_eq!(
            deliver_raw(&app, &path, "issue_comment", Some(&signature), &tampered)
                .await
                .0,
            401
        );
        let other = connectors::webhook::Secret::parse("wh-some-other-secret-0000")
            .unwrap()
            .sign_github(body.as_bytes());
        assert_eq!(
            deliver_raw(&app, &path, "issue_comment", Some(&other), &body)
                .await
                .0,
            401
        );
        assert_eq!(
            deliver_raw(&app, &path, "issue_comment", Some("sha256=zz"), &body)
                .await
                .0,
            401
        );
        assert_eq!(stored_ids(&app).await, before);
        // The right signature over that body is taken (the forgery above was only unsigned).
        assert_eq!(
            deliver_raw(&app, &path, "issue_comment", Some(&signature), &body)
                .await
                .0,
            200
        );
        assert_eq!(stored_ids(&app).await.len(), 4);
        let before = stored_ids(&app).await;

        // Events and actions not listened to, and repositories not configured: 200, nothing.
        let edited = event_payload(
            "edited",
            json!({ "issue": opened, "comment": maya,
            "changes": { "body": { "from": "old" } } }),
            REPO,
            MAYA,
        );
        let labeled = event_payload(
            "labeled",
            json!({ "issue": opened,
            "label": { "id": 1, "name": "bug", "color": "d73a4a" } }),
            REPO,
            US,
        );
        let elsewhere = event_payload(
            "created",
            json!({ "issue": opened,
            "comment": comment(1_956_019_999, MAYA, "User", 1347, "elsewhere", 5) }),
            "acme/gadgets",
            MAYA,
        );
        let starred = event_payload(
            "created",
            json!({ "starred_at": "2026-11-02T09:00:00Z" }),
            REPO,
            MAYA,
        );
        for (event, payload) in [
            ("issue_comment", &edited),
            ("issues", &labeled),
            ("issue_comment", &elsewhere),
            ("star", &starred),
        ] {
            let (status, answer) = deliver_signed(&app, &path, event, HOOK_SECRET, payload).await;
            assert_eq!(status, 200, "{event} {answer}");
            assert!(answer["ignored"].is_string(), "{event} {answer}");
            assert_eq!(answer["interactionId"], Value::Null);
        }
        assert_eq!(stored_ids(&app).await, before);

        // A pull of the same items finds them stored: the same external ids.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(
            (report["newItems"].clone(), report["duplicates"].clone()),
            (json!(0), json!(3)),
            "{report:#}"
        );
        assert!(stored_ids(&app).await.values().all(|n| *n == 1));

        // Another workspace's GitHub source: a delivery signed with our secret is refused
        // there, and a source without a webhook_secret has no address at all.
        let theirs_key = app.key_in("globex", Role::Admin).await;
        let theirs = create_hooked(
            &app,
            &theirs_key,
            "globex",
            github.config(json!({ "webhook_secret": "wh-globex-secret-7a6b5c4d3e" })),
        )
        .await;
        let theirs_path = theirs["webhookPath"].as_str().unwrap().to_owned();
        assert_eq!(
            deliver_signed(&app, &theirs_path, "issue_comment", HOOK_SECRET, &commented)
                .await
                .0,
            401
        );
        let plain = create_hooked(&app, &theirs_key, "plain", github.config(json!({}))).await;
        assert_eq!(plain["webhookPath"], Value::Null);
        let plain_path = format!("/webhooks/{}", plain["id"].as_str().unwrap());
        let (status, answer) =
            deliver_signed(&app, &plain_path, "issue_comment", HOOK_SECRET, &commented).await;
        assert_eq!(status, 404, "{answer}");
        assert_eq!(stored_ids(&app).await, before);
    }
);

backend_test!(
    async fn the_same_user_id_on_two_github_servers_is_two_people(app: TestApp) {
        let key = app.key(Role::Admin).await;
        // Two GitHub Enterprise Servers (two stand-ins, two ports): their user 5811112
        // are not the same account.
        let (first, second) = (Github::start().await, Github::start().await);
        first.add_comment(comment(1_956_013_482, MAYA, "User", 1347, "pulled here", 2));
        let theirs = comment(1_956_020_001, MAYA, "User", 1347, "delivered there", 3);
        second.add_comment(theirs.clone());
        let pulled = first.source(&app, &key, "first", json!({})).await;
        let report = sync(&app, &key, &pulled).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        let hooked = create_hooked(
            &app,
            &key,
            "second",
            second.config(json!({ "webhook_secret": HOOK_SECRET })),
        )
        .await;
        let path = format!("/webhooks/{}", hooked["id"].as_str().unwrap());
        let commented = event_payload(
            "created",
            json!({ "issue": issue(1347, LUCIA, "CSV", "fails", 1, false), "comment": theirs }),
            REPO,
            MAYA,
        );
        let (status, answer) =
            deliver_signed(&app, &path, "issue_comment", HOOK_SECRET, &commented).await;
        assert_eq!(status, 200, "{answer}");

        let all = items(&app, &key).await;
        let here = &all["issuecomment-1956013482"];
        let there = &all["issuecomment-1956020001"];
        assert_eq!(here["identity"]["platformId"], first.identity(MAYA.1));
        assert_eq!(there["identity"]["platformId"], second.identity(MAYA.1));
        assert_ne!(first.identity(MAYA.1), second.identity(MAYA.1));
        assert_ne!(here["customer"]["id"], there["customer"]["id"]);
        // The second server's pull finds the delivered comment under the same identity.
        let report = sync(&app, &key, hooked["id"].as_str().unwrap()).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["duplicates"], 1, "{report:#}");
        let all = items(&app, &key).await;
        assert_eq!(all.len(), 2);
        assert_eq!(
            all["issuecomment-1956020001"]["customer"]["id"],
            there["customer"]["id"]
        );
    }
);

const PAUSE: &str = "mutation($id: ID!) { pauseSource(input: {id: $id}) { source { status } } }";
const RESUME: &str = "mutation($id: ID!) { resumeSource(input: {id: $id}) { source { status } } }";

backend_test!(
    async fn a_paused_source_asks_github_nothing_and_a_stalled_github_is_answered_503(
        app: TestApp,
    ) {
        let app = TestApp::with_config(app.backend, |config| {
            config.limits.webhook_timeout_secs = 1;
        })
        .await
        .unwrap();
        let key = app.key(Role::Admin).await;
        let github = Github::start().await;
        let source = create_hooked(
            &app,
            &key,
            "acme",
            github.config(json!({ "webhook_secret": HOOK_SECRET })),
        )
        .await;
        let id = source["id"].as_str().unwrap().to_owned();
        let path = format!("/webhooks/{id}");
        let opened = issue(1347, LUCIA, "CSV export fails", "It times out.", 1, false);
        let payload = event_payload("opened", json!({ "issue": opened }), REPO, LUCIA);

        // Paused: a signed delivery is 503 and GitHub is not asked who the token is.
        app.gql(&key, PAUSE, json!({ "id": id })).await;
        let (status, answer) = deliver_signed(&app, &path, "issues", HOOK_SECRET, &payload).await;
        assert_eq!(status, 503, "{answer}");
        assert_eq!(answer["errors"][0]["extensions"]["code"], "CONFLICT");
        assert!(github.seen("/user").is_empty());
        // An unsigned one is refused as it is by a running source: nothing says "paused".
        let (status, answer) = deliver_raw(&app, &path, "issues", None, &payload.to_string()).await;
        assert_eq!(status, 401, "{answer}");
        assert_eq!(answer["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
        assert!(!answer.to_string().contains("paused"), "{answer}");
        assert!(stored_ids(&app).await.is_empty());

        // Running again, with GitHub stalling on `GET /user`: answered 503 within the
        // budget (GitHub gives up after 10 s), nothing stored.
        app.gql(&key, RESUME, json!({ "id": id })).await;
        github.server.handle("/user", |_| {
            Reply::json(&user(US, "User")).delay(std::time::Duration::from_secs(30))
        });
        let started = std::time::Instant::now();
        let (status, answer) = deliver_signed(&app, &path, "issues", HOOK_SECRET, &payload).await;
        assert_eq!(status, 503, "{answer}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(8),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(github.seen("/user").len(), 1);
        assert!(stored_ids(&app).await.is_empty());
    }
);

backend_test!(
    async fn discussion_webhooks_thread_as_the_pulled_discussion(app: TestApp) {
        let key = app.key(Role::Admin).await;
        let github = Github::start().await;
        // Maya opens discussion 7, Lucía comments, Maya answers Lucía's comment.
        let mut pulled = discussion(7, MAYA, "Dark mode?", "Any plans for a dark theme?", 10);
        let mut lucia =
            discussion_comment("DC_kwDOKx3Y5s4AhLu1", 7, LUCIA, "User", "+1 from me", 11);
        let mut reply = discussion_comment(
            "DC_kwDOKx3Y5s4AhMa2",
            7,
            MAYA,
            "User",
            "@acme-support any news?",
            12,
        );
        reply.as_object_mut().unwrap().remove("replies");
        reply["replyTo"] = json!({ "id": "DC_kwDOKx3Y5s4AhLu1" });
        lucia["replies"]["nodes"] = json!([reply.clone()]);
        pulled["comments"]["nodes"] = json!([lucia.clone()]);
        github
            .state
            .lock()
            .unwrap()
            .discussions
            .push(pulled.clone());

        let source = create_hooked(
            &app,
            &key,
            "acme",
            github.config(json!({ "webhook_secret": HOOK_SECRET })),
        )
        .await;
        let id = source["id"].as_str().unwrap().to_owned();
        let path = source["webhookPath"].as_str().unwrap().to_owned();

        // The same discussion and comments as GitHub's webhooks carry them (REST names).
        let rest_discussion = json!({
            "id": 5_001, "node_id": pulled["id"], "number": 7, "title": "Dark mode?",
            "body": "Any plans for a dark theme?", "html_url": pulled["url"],
            "user": user(MAYA, "User"), "state": "open", "locked": false, "comments": 0,
            "created_at": pulled["createdAt"], "updated_at": pulled["updatedAt"],
            "author_association": "NONE", "active_lock_reason": null, "answer_html_url": null,
            "category": { "id": 31, "node_id": "DIC_kwDOKx3Y5s4CAl", "slug": "ideas",
                "name": "Ideas", "emoji": ":bulb:", "is_answerable": false }
        });
        let rest_comment = |node: &Value, id: u64, parent: Option<u64>, author: (&str, u64)| {
            json!({
                "id": id, "node_id": node["id"], "html_url": node["url"], "parent_id": parent,
                "child_comment_count": 0, "repository_url": format!("https://api.github.com/repos/{REPO}"),
                "discussion_id": 5_001, "author_association": "NONE", "user": user(author, "User"),
                "created_at": node["createdAt"], "updated_at": node["updatedAt"], "body": node["body"]
            })
        };
        let deliveries = [
            ("discussion", json!({ "discussion": rest_discussion })),
            (
                "discussion_comment",
                json!({ "discussion": rest_discussion,
                "comment": rest_comment(&lucia, 9_001, None, LUCIA) }),
            ),
            (
                "discussion_comment",
                json!({ "discussion": rest_discussion,
                "comment": rest_comment(&reply, 9_002, Some(9_001), MAYA) }),
            ),
        ];
        for (event, objects) in &deliveries {
            let (status, answer) = deliver_signed(
                &app,
                &path,
                event,
                HOOK_SECRET,
                &event_payload("created", objects.clone(), REPO, MAYA),
            )
            .await;
            assert_eq!(status, 200, "{event} {answer}");
            assert!(answer["interactionId"].is_string(), "{event} {answer}");
        }
        let all = items(&app, &key).await;
        let thread = &all["D_kwDOKx3Y5s4AXy7"]["conversation"]["id"];
        assert_eq!(all["D_kwDOKx3Y5s4AXy7"]["subject"], "Dark mode?");
        assert_eq!(all["D_kwDOKx3Y5s4AXy7"]["kind"], "POST");
        assert_eq!(all["DC_kwDOKx3Y5s4AhLu1"]["conversation"]["id"], *thread);
        assert_eq!(all["DC_kwDOKx3Y5s4AhMa2"]["conversation"]["id"], *thread);
        assert_eq!(all["DC_kwDOKx3Y5s4AhMa2"]["kind"], "MENTION");
        assert_eq!(
            all["DC_kwDOKx3Y5s4AhLu1"]["identity"]["platformId"],
            github.identity(LUCIA.1)
        );
        // The reply's parent was asked of GitHub by the reply's node id.
        let asked: Vec<Value> = github
            .seen("/graphql")
            .iter()
            .map(|seen| serde_json::from_slice(&seen.body).unwrap())
            .collect();
        assert_eq!(asked.len(), 1);
        assert_eq!(
            asked[0]["variables"],
            json!({ "id": "DC_kwDOKx3Y5s4AhMa2" })
        );

        // The pull finds all three stored.
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(
            (report["newItems"].clone(), report["duplicates"].clone()),
            (json!(0), json!(3)),
            "{report:#}"
        );
    }
);

backend_test!(
    async fn a_github_profile_naming_a_bluesky_handle_or_site_of_another_customer_is_a_duplicate_suggestion(
        app: TestApp,
    ) {
        let key = app.key(Role::Admin).await;
        let github = Github::start().await;
        // Maya's public profile (`GET /users/{username}`) and the social accounts she
        // listed (`GET /users/{username}/social_accounts`); Lucía's cannot be read (404).
        github.server.handle(&format!("/users/{}", MAYA.0), |_| {
            let mut profile = user(MAYA, "User");
            for (field, value) in [
                ("name", json!("Maya López")),
                ("company", json!("@lopez-labs")),
                ("blog", json!("maya.example.com")),
                ("location", json!("Valencia")),
                ("email", Value::Null),
                ("hireable", Value::Null),
                ("bio", json!("Data plumbing. Mail maya@lopez.example")),
                ("twitter_username", Value::Null),
                ("public_repos", json!(31)),
                ("followers", json!(120)),
                ("following", json!(8)),
                ("created_at", json!("2016-02-03T09:00:00Z")),
                ("updated_at", json!("2026-11-20T18:00:00Z")),
            ] {
                profile[field] = value;
            }
            Reply::json(&profile)
        });
        github
            .server
            .handle(&format!("/users/{}/social_accounts", MAYA.0), |_| {
                Reply::json(&json!([
                    { "provider": "bluesky", "url": "https://bsky.app/profile/maya.example.com" },
                    { "provider": "linkedin", "url": "https://www.linkedin.com/in/maya-lopez" }
                ]))
            });
        // The records her profile names: a customer whose website is her Bluesky handle's
        // domain, and one holding the address in her bio.
        let site = app
            .create_customer(&key, json!({ "displayName": "M. López", "contactPoints": [{ "kind": "WEBSITE", "value": "https://maya.example.com/" }] }))
            .await;
        let mail = app
            .create_customer(&key, json!({ "displayName": "Lopez Labs", "contactPoints": [{ "kind": "EMAIL", "value": "maya@lopez.example" }] }))
            .await;
        github.add_issue(issue(
            1347,
            LUCIA,
            "CSV export fails",
            "Exporting 20k contacts times out.",
            1,
            false,
        ));
        github.add_comment(comment(1_956_013_482, MAYA, "User", 1347, "same here", 2));
        github.add_comment(comment(
            1_956_013_483,
            MAYA,
            "User",
            1347,
            "and with 5k rows",
            3,
        ));
        // Sam's profile never answers in time: the pull stops reading profiles, not items.
        const SAM: (&str, u64) = ("slow-sam", 8_123);
        github.server.handle(&format!("/users/{}", SAM.0), |_| {
            Reply::json(&user(SAM, "User")).delay(std::time::Duration::from_secs(60))
        });
        github.add_comment(comment(1_956_013_484, SAM, "User", 1347, "+1", 4));
        let id = github.source(&app, &key, "acme", json!({})).await;
        let started = std::time::Instant::now();
        let report = sync(&app, &key, &id).await;
        assert_eq!(report["error"], Value::Null, "{report:#}");
        assert_eq!(report["newItems"], 4, "{report:#}");
        // Not a speed check: without its own deadline the pull would wait out the client's
        // 30 s timeout on Sam's profile.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(25),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            github.seen(&format!("/users/{}", MAYA.0)).len(),
            1,
            "one read of a profile per pull, however many items"
        );

        let data = app
            .gql(&key, "{ duplicateSuggestions { totalCount edges { node { score reasons { kind detail } a { id } b { id } } } } }", json!({}))
            .await;
        let list = &data["duplicateSuggestions"];
        assert_eq!(list["totalCount"], 2, "{data:#}");
        for (customer, words) in [
            (&site, "https://bsky.app/profile/maya.example.com"),
            (&mail, "maya@lopez.example"),
        ] {
            let edge = list["edges"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| {
                    e["node"]["a"]["id"] == json!(customer)
                        || e["node"]["b"]["id"] == json!(customer)
                })
                .unwrap_or_else(|| panic!("{customer}: {data:#}"));
            let details: String = edge["node"]["reasons"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["detail"].as_str().unwrap().to_owned())
                .collect();
            assert!(
                details.contains("github")
                    && (details.contains(words) || details.contains("maya.example.com")),
                "{details}"
            );
        }
        let customers = app
            .gql(&key, "{ customers(first: 10) { totalCount } }", json!({}))
            .await;
        assert_eq!(
            customers["customers"]["totalCount"], 5,
            "suggested, not merged"
        );
    }
);
