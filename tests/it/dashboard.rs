//! The IP-office dashboard in a real browser (headless Chromium driven through chromedriver): it
//! loads from the binary, shows the exact totals of seeded data, drills down province → city →
//! county, lists pledgees with their credit utilisation and a trend, and shows only what the
//! viewer's token may see. Also the JSON API's refusals, called by the page's own `fetch`.

use crate::credit_lines::line;
use crate::helpers::*;
use fantoccini::{Client, ClientBuilder, Locator};
use ipledger::proto::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Chromium's wait for a page state at most.
const WAIT_S_MAX: u64 = 30;

/// A headless Chromium session; chromedriver is killed with it.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start(extra_args: &[&str]) -> Browser {
        let chromedriver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {chromedriver} ({e}): install chromium and chromium-driver, as .ci/run does")
            });
        let profile = tempfile::tempdir().unwrap();
        // These flags keep Chromium off the network (this machine has none) and out of the way.
        let mut args = vec![
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,2000",
        ];
        let profile_arg = format!("--user-data-dir={}", profile.path().display());
        args.push(&profile_arg);
        args.extend_from_slice(extra_args);
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), serde_json::json!({"binary": chromium, "args": args}));
        let mut attempt = 0;
        let client = loop {
            match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                // chromedriver takes a moment to listen.
                Err(_) if attempt < 100 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("chromedriver did not start a session: {e}"),
            }
        };
        Browser { client, driver, _profile: profile }
    }

    /// Waits until the page has rendered `region` (empty: the token's whole scope).
    async fn ready(&self, region: &str) {
        let selector = if region.is_empty() {
            "body[data-state='ready'][data-region='']".to_owned()
        } else {
            format!("body[data-state='ready'][data-region='{region}']")
        };
        if let Err(e) =
            self.client.wait().at_most(Duration::from_secs(WAIT_S_MAX)).for_element(Locator::Css(&selector)).await
        {
            let error = self.text("#error").await;
            panic!("the page never showed {selector}: {e}; error box: {error:?}");
        }
    }

    async fn text(&self, css: &str) -> String {
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).text().await.unwrap()
    }

    /// Every row of a table as (data-key, [cell texts]).
    async fn rows(&self, table: &str) -> Vec<(String, Vec<String>)> {
        let script = format!(
            "return [...document.querySelectorAll('#{table} tbody tr')].map(tr => \
             [tr.dataset.key || tr.dataset.asOf, [...tr.querySelectorAll('td')].map(td => \
             (td.querySelector('.figure') || td).textContent.trim())]);"
        );
        serde_json::from_value(self.client.execute(&script, vec![]).await.unwrap()).unwrap()
    }

    async fn sign_in(&self, server: &TestServer, token: &str) {
        self.sign_in_at(&format!("http://{}", server.addr), token).await;
    }

    async fn sign_in_at(&self, base: &str, token: &str) {
        self.client.goto(&format!("{base}/dashboard/")).await.unwrap();
        let signout = self.client.find(Locator::Id("signout")).await.unwrap();
        if signout.is_displayed().await.unwrap() {
            signout.click().await.unwrap();
        }
        self.client.wait().for_element(Locator::Css("#token")).await.unwrap().send_keys(token).await.unwrap();
        self.client.find(Locator::Css("#signin button[type=submit]")).await.unwrap().click().await.unwrap();
    }

    async fn click(&self, css: &str) {
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
    }

    /// The page's own `fetch` of the JSON API: (HTTP status, body).
    async fn fetch(&self, path: &str, authorization: Option<&str>, body: &str) -> (u64, serde_json::Value) {
        let script = "const [path, auth, body, done] = arguments; \
             const headers = {'content-type': 'application/json'}; if (auth) headers.authorization = auth; \
             fetch(path, {method: 'POST', headers, body}).then(async r => done([r.status, await r.text()]));";
        let answer = self
            .client
            .execute_async(
                script,
                vec![path.into(), authorization.map_or(serde_json::Value::Null, Into::into), body.into()],
            )
            .await
            .unwrap();
        let status = answer[0].as_u64().unwrap();
        (status, serde_json::from_str(answer[1].as_str().unwrap()).unwrap_or(serde_json::Value::Null))
    }

    async fn close(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Seeds: a 1,000,000-yuan credit line of bank A signed in Hangzhou with 300,000 drawn on it;
/// Zhejiang 500,000 (Xihu 300,000, Binjiang 200,000), Jiangsu 400,000 (bank B), Guangdong 100,000.
async fn seed(server: &TestServer) {
    let mut lines = server.credit_lines().await;
    let credit_line = lines.create_credit_line(line("330100", "1000000.00", BANK_A)).await.unwrap().into_inner();
    let mut pledges = server.pledges().await;
    let mut drawing = pledge("330106", "300000.00");
    drawing.credit_line_id = credit_line.id;
    drawing.registered_on = "2019-06-05".into();
    let mut nanjing = pledge("320106", "400000.00");
    nanjing.pledgee = Some(party("Bank B", BANK_B));
    let mut later = pledge("440305", "100000.00");
    later.registered_on = "2021-03-01".into();
    later.debt_term_start = "2021-03-01".into();
    later.debt_term_end = "2023-03-01".into();
    for p in [drawing, pledge("330108", "200000.00"), nanjing, later] {
        pledges.register_pledge(register(p)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_totals_drills_down_and_respects_the_token_scope() {
    let server = TestServer::start().await;
    seed(&server).await;
    let browser = Browser::start(&[]).await;

    browser.sign_in(&server, &server.admin_token).await;
    browser.ready("").await;
    assert_eq!(browser.text("#crumbs").await, "全国");
    assert_eq!(browser.text("#total-secured").await, "1,000,000.00");
    assert_eq!(browser.text("#total-pledges").await, "4");
    assert_eq!(browser.text("#total-enterprises").await, "4");
    assert_eq!(browser.text("#total-credit").await, "300,000.00 / 1,000,000.00");
    assert_eq!(browser.text("#total-utilisation").await, "30.0 %");
    // Provinces, largest first; a province with nothing is listed with zeros.
    let provinces = browser.rows("regions").await;
    assert_eq!(provinces.len(), 31, "every province-level region of the mainland table");
    assert_eq!(provinces[0].0, "330000");
    assert_eq!(provinces[0].1, ["浙江省", "500,000.00", "2", "2", "30.0 %"]);
    assert_eq!(provinces[1].0, "320000");
    assert_eq!(provinces[1].1[1], "400,000.00");
    assert_eq!(provinces[2].0, "440000");
    assert_eq!(provinces.iter().find(|(k, _)| k == "110000").unwrap().1[1..3], ["0.00", "0"]);
    // Top pledgees with their credit utilisation.
    let pledgees = browser.rows("pledgees").await;
    let keys: Vec<&str> = pledgees.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, [BANK_A, BANK_B]);
    assert_eq!(pledgees[0].1[1..], ["600,000.00", "3", "300,000.00 / 1,000,000.00", "30.0 %"].map(String::from));
    assert_eq!(pledgees[1].1[4], "–", "bank B has no credit line");
    // Trend: in force at each year-end by business dates, and today.
    let trend = browser.rows("trend").await;
    assert_eq!(trend.len(), 10);
    let at = |date: &str| trend.iter().find(|(d, _)| d == date).map(|(_, cells)| cells[1..].to_vec());
    assert_eq!(at("2018-12-31"), Some(vec!["0.00".to_owned(), "0".to_owned()]));
    assert_eq!(at("2020-12-31"), Some(vec!["900,000.00".to_owned(), "3".to_owned()]));
    assert_eq!(at("2021-12-31"), Some(vec!["1,000,000.00".to_owned(), "4".to_owned()]));
    assert_eq!(trend.last().unwrap().1[1..], ["1,000,000.00", "4"]);

    // Drill down: province → city → county.
    browser.click("#regions a[data-key='330000']").await;
    browser.ready("330000").await;
    assert_eq!(browser.text("#crumbs").await, "全国›浙江省");
    assert_eq!(browser.text("#total-secured").await, "500,000.00");
    let cities = browser.rows("regions").await;
    assert_eq!(cities[0].0, "330100");
    assert_eq!(cities[0].1[..3], ["杭州市", "500,000.00", "2"]);
    assert!(cities[1..].iter().all(|(_, cells)| cells[1] == "0.00"), "{cities:?}");
    browser.click("#regions a[data-key='330100']").await;
    browser.ready("330100").await;
    assert_eq!(browser.text("#crumbs").await, "全国›浙江省›杭州市");
    let counties = browser.rows("regions").await;
    let nonzero: Vec<(&str, &str, &str)> = counties
        .iter()
        .filter(|(_, c)| c[1] != "0.00")
        .map(|(k, c)| (k.as_str(), c[0].as_str(), c[1].as_str()))
        .collect();
    assert_eq!(nonzero, [("330106", "西湖区", "300,000.00"), ("330108", "滨江区", "200,000.00")]);
    assert!(browser.client.find(Locator::Css("#regions a[data-key='330106']")).await.is_err(), "counties are leaves");
    // The breadcrumb goes back up.
    browser.click("#crumbs a[href='#/330000']").await;
    browser.ready("330000").await;
    assert_eq!(browser.text("#total-pledges").await, "2");

    // An office of Jiangsu sees Jiangsu only, and is refused elsewhere.
    let office = server.token("jiangsu-office", TokenRole::Office, "", "320000").await;
    browser.sign_in(&server, &office).await;
    browser.ready("320000").await;
    assert_eq!(browser.text("#crumbs").await, "江苏省");
    assert_eq!(browser.text("#who").await, "Scope: 江苏省");
    assert_eq!(browser.text("#total-secured").await, "400,000.00");
    assert_eq!(browser.rows("pledgees").await.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), [BANK_B]);
    browser.client.goto(&format!("http://{}/dashboard/#/330000", server.addr)).await.unwrap();
    browser.client.wait().for_element(Locator::Css("body[data-state='error']")).await.unwrap();
    assert!(browser.text("#error").await.starts_with("PERMISSION_DENIED: "), "{}", browser.text("#error").await);

    // A bank sees its own book.
    let bank = server.token("bank-b", TokenRole::Bank, BANK_B, "").await;
    browser.sign_in(&server, &bank).await;
    browser.ready("").await;
    assert_eq!(browser.text("#total-secured").await, "400,000.00");
    browser.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_api_answers_like_connect_and_refuses_like_grpc() {
    let server = TestServer::start().await;
    seed(&server).await;
    let browser = Browser::start(&[]).await;
    browser.client.goto(&format!("http://{}/dashboard/", server.addr)).await.unwrap();
    let admin = format!("Bearer {}", server.admin_token);
    let exposure = "/api/ipledger.v1.ExposureService/GetExposure";

    let (status, body) = browser.fetch(exposure, Some(&admin), r#"{"regionCode":"330000"}"#).await;
    assert_eq!(
        (status, body["regionName"].as_str(), body["total"]["pledgeCount"].as_str()),
        (200, Some("浙江省"), Some("2"))
    );
    let (status, body) = browser.fetch(exposure, None, "{}").await;
    assert_eq!((status, body["code"].as_str()), (401, Some("unauthenticated")));
    let (status, body) = browser.fetch(exposure, Some(&admin), r#"{"regionCode":"999999"}"#).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_argument")));
    assert_eq!(body["details"][0]["debug"]["reason"], "INVALID_FIELDS");
    assert_eq!(body["details"][1]["debug"]["fieldViolations"][0]["field"], "regionCode");
    let (status, body) = browser.fetch(exposure, Some(&admin), r#"{"region":"330000"}"#).await;
    assert_eq!((status, body["code"].as_str()), (400, Some("invalid_argument")));
    let office = format!("Bearer {}", server.token("zj-office", TokenRole::Office, "", "330000").await);
    let (status, body) = browser.fetch(exposure, Some(&office), r#"{"regionCode":"320000"}"#).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("permission_denied")));
    assert_eq!(body["details"][0]["debug"]["reason"], "PERMISSION_DENIED");
    // Lists use the gRPC handlers' own paging and filters.
    let (status, body) =
        browser.fetch("/api/ipledger.v1.PledgeService/ListPledges", Some(&office), r#"{"pageSize":1}"#).await;
    assert_eq!((status, body["pledges"].as_array().map(Vec::len)), (200, Some(1)));
    assert!(body["nextPageToken"].as_str().is_some_and(|t| !t.is_empty()));
    // Writes stay on gRPC.
    let (status, body) = browser.fetch("/api/ipledger.v1.PledgeService/RegisterPledge", Some(&admin), "{}").await;
    assert_eq!((status, body["code"].as_str()), (404, Some("unimplemented")));
    browser.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_works_over_tls() {
    let s = crate::tls::start(false).await;
    let channel = crate::tls::tls_channel(&s, None).await.unwrap();
    let mut pledges = ipledger::proto::pledge_service_client::PledgeServiceClient::with_interceptor(
        channel,
        Bearer::new(&s.server.admin_token),
    );
    pledges.register_pledge(register(pledge("330106", "250000.00"))).await.unwrap();
    // The test CA is not in Chromium's store; the certificate itself is checked by the TLS tests.
    let browser = Browser::start(&["--ignore-certificate-errors"]).await;
    browser.sign_in_at(&format!("https://localhost:{}", s.server.addr.port()), &s.server.admin_token).await;
    browser.ready("").await;
    assert_eq!(browser.text("#total-secured").await, "250,000.00");
    browser.click("#regions a[data-key='330000']").await;
    browser.ready("330000").await;
    assert_eq!(browser.text("#total-pledges").await, "1");
    let protocol =
        browser.client.execute("return performance.getEntriesByType('navigation')[0].nextHopProtocol;", vec![]);
    assert_eq!(protocol.await.unwrap(), "h2", "over TLS the page comes over HTTP/2");
    browser.close().await;
    s.server.stop().await;
}
