//! GraphiQL from the binary: the page a browser gets at `/graphql` names only assets this
//! server serves (compressed, cached, under a policy that allows nothing else), and starts
//! with the demo's key when there is one. clients/graphiql.mjs runs it in Chromium.

use std::io::Read;

use crate::backend_test;

/// The `src` and `href` values of a page, in order.
fn links(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(at) = rest.find(attribute) {
            rest = &rest[at + attribute.len()..];
            let end = rest.find('"').expect("a closed attribute");
            found.push(rest[..end].to_owned());
        }
    }
    found
}

backend_test! {
    async fn graphiql_is_served_whole_from_the_binary(app: TestApp) {
        let response = app.client.get(app.url("/graphql")).header("accept", "text/html").send().await.unwrap();
        if response.status() == 503 {
            // Built where npm could not fetch GraphiQL (build.rs warned): the page says so.
            let text = response.text().await.unwrap();
            assert!(text.contains("GraphiQL is not in this build"), "{text}");
            eprintln!("skipped: this build has no GraphiQL assets (npm could not fetch them at build time)");
            return;
        }
        assert_eq!(response.status(), 200);
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert_eq!(headers["cache-control"], "no-store");
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.starts_with("default-src 'none'; script-src 'self'; style-src 'self';"), "{policy}");
        assert!(!policy.contains("unsafe") && !policy.contains("http"), "{policy}");
        let html = response.text().await.unwrap();
        assert!(!html.contains("<script>"), "no inline script: the policy would refuse it");
        // Without `serve --demo` the headers editor holds a placeholder, no key.
        assert!(html.contains(r#"Bearer \u003cyour API key>"#), "{html}");
        assert!(html.contains(r#""key":null"#), "{html}");

        let assets: Vec<String> = links(&html).into_iter().filter(|link| !link.starts_with("data:")).collect();
        assert_eq!(assets.len(), 6, "{assets:?}");
        for asset in &assets {
            assert!(asset.starts_with("/graphiql/"), "{asset} is not this server's");
            let gzipped = app.client.get(app.url(asset)).header("accept-encoding", "gzip").send().await.unwrap();
            assert_eq!(gzipped.status(), 200, "{asset}");
            let expected_type = if asset.ends_with(".css") { "text/css; charset=utf-8" } else { "text/javascript; charset=utf-8" };
            assert_eq!(gzipped.headers()["content-type"], expected_type, "{asset}");
            assert_eq!(gzipped.headers()["x-content-type-options"], "nosniff");
            let encoded = gzipped.headers().get("content-encoding").map(|value| value.to_str().unwrap().to_owned());
            let compressed = gzipped.bytes().await.unwrap();
            // Without gzip in Accept-Encoding the same file comes as it is.
            let plain = app.client.get(app.url(asset)).send().await.unwrap();
            assert_eq!(plain.status(), 200);
            assert!(plain.headers().get("content-encoding").is_none(), "{asset}");
            let plain = plain.bytes().await.unwrap();
            if encoded.as_deref() == Some("gzip") {
                let mut inflated = Vec::new();
                flate2::read::GzDecoder::new(&compressed[..]).read_to_end(&mut inflated).unwrap();
                assert_eq!(inflated, plain, "{asset}");
                assert!(compressed.len() < plain.len(), "{asset} is compressed");
            } else {
                assert_eq!(compressed, plain, "{asset}");
            }
            assert!(!plain.is_empty());
        }
        // The vendored files are versioned, so cached for good; Rapport's own are revalidated.
        let vendored = app.client.get(app.url("/graphiql/graphiql-4.1.2.min.js")).send().await.unwrap();
        assert_eq!(vendored.headers()["cache-control"], "public, max-age=31536000, immutable");
        let own = app.client.get(app.url("/graphiql/rapport-graphiql.js")).send().await.unwrap();
        assert_eq!(own.headers()["cache-control"], "no-cache");
        for missing in ["/graphiql/nothing.js", "/graphiql/..%2Fschema.graphql", "/graphiql/"] {
            let response = app.client.get(app.url(missing)).send().await.unwrap();
            assert_eq!(response.status(), 404, "{missing}");
        }
    }
}

backend_test! {
    async fn graphiql_starts_with_the_demo_key(app: TestApp) {
        let mut demo = app.app.clone();
        demo.graphiql_key = Some("rpk_demo</script><b>".into());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(rapport::http::serve(demo, listener, std::future::pending()));
        let response = app.client.get(format!("http://{addr}/graphql")).header("accept", "text/html").send().await.unwrap();
        if response.status() == 503 {
            eprintln!("skipped: this build has no GraphiQL assets (npm could not fetch them at build time)");
            return;
        }
        let html = response.text().await.unwrap();
        // In the JSON block, `<` escaped: nothing in a key can close the script element.
        assert!(html.contains(r#""key":"rpk_demo\u003c/script>\u003cb>""#), "{html}");
        assert!(html.contains(r#"Bearer rpk_demo\u003c/script>\u003cb>"#), "{html}");
        assert_eq!(html.matches("</script>").count(), 5, "{html}");
        // Another site's script cannot read the page (no CORS header on it), and a page
        // fetched by a script, or through a name that is not a loopback address (DNS
        // rebinding), does not get the key.
        let page = |headers: &'static [(&'static str, &'static str)]| {
            let mut request = app.client.get(format!("http://{addr}/graphql")).header("accept", "text/html");
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            async move { request.send().await.unwrap() }
        };
        let response = page(&[("origin", "https://evil.example")]).await;
        assert!(response.headers().get("access-control-allow-origin").is_none(), "{:?}", response.headers());
        for headers in [
            &[("sec-fetch-mode", "cors"), ("sec-fetch-site", "cross-site")][..],
            &[("host", "evil.example:8080"), ("sec-fetch-mode", "navigate"), ("sec-fetch-site", "none")][..],
        ] {
            let html = page(headers).await.text().await.unwrap();
            assert!(!html.contains("rpk_demo"), "{headers:?}: {html}");
            assert!(html.contains(r#""key":null"#), "{html}");
        }
        // The API itself stays open to every origin.
        let response = app.client.post(format!("http://{addr}/graphql")).header("origin", "https://app.example").json(&serde_json::json!({"query": "{ __typename }"})).send().await.unwrap();
        assert_eq!(response.headers()["access-control-allow-origin"], "*");
    }
}
