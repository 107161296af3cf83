//! The IP-office dashboard in a real browser (headless Chromium driven through chromedriver): it
//! loads from the binary, shows the exact totals of seeded data, drills down province → city →
//! county, lists pledgees with their credit utilisation and a trend, and shows only what the
//! viewer's token may see; the risk side (at risk, defaults, valuations, compensation, programme
//! budgets) of seeded risk data in the totals and both tables, at every level of the drill-down.
//! Also the JSON API's refusals, called by the page's own `fetch`.

use crate::credit_lines::line;
use crate::helpers::*;
use fantoccini::{Client, ClientBuilder, Locator};
use ipledger::proto::risk_service_client::RiskServiceClient;
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
/// Returns the registered pledges.
async fn seed(server: &TestServer) -> Vec<Pledge> {
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
    let mut registered = Vec::new();
    for p in [drawing, pledge("330108", "200000.00"), nanjing, later] {
        registered.push(pledges.register_pledge(register(p)).await.unwrap().into_inner());
    }
    registered
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
    assert_eq!(provinces[0].1[..5], ["浙江省", "500,000.00", "2", "2", "30.0 %"]);
    assert_eq!(provinces[1].0, "320000");
    assert_eq!(provinces[1].1[1], "400,000.00");
    assert_eq!(provinces[2].0, "440000");
    assert_eq!(provinces.iter().find(|(k, _)| k == "110000").unwrap().1[1..3], ["0.00", "0"]);
    // Top pledgees with their credit utilisation.
    let pledgees = browser.rows("pledgees").await;
    let keys: Vec<&str> = pledgees.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, [BANK_A, BANK_B]);
    assert_eq!(pledgees[0].1[1..5], ["600,000.00", "3", "300,000.00 / 1,000,000.00", "30.0 %"]);
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

/// Risk data on the seeded pledges, through the real gRPC API with the admin token:
/// - Binjiang (bank A, 200,000): its patent lapsed, so the pledge is at risk;
/// - Xihu (bank A, 300,000): appraised at 600,000; defaulted with 120,000 outstanding and a loss of
///   50,000, claimed under Hangzhou's programme (1,000,000 a year, 40% of the loss on loans up to
///   1,000,000: 20,000), approved, 15,000 paid;
/// - Nanjing (bank B, 400,000): its patent invalidated; appraised at 1,000,000; defaulted with
///   100,000 outstanding, the loss not known yet.
async fn seed_risk(server: &TestServer, seeded: &[Pledge]) {
    let in_county = |county: &str| seeded.iter().find(|p| p.county_code == county).unwrap();
    let (xihu, binjiang, nanjing) = (in_county("330106"), in_county("330108"), in_county("320106"));
    let mut risk = RiskServiceClient::with_interceptor(server.channel().await, Bearer::new(&server.admin_token));
    let lost = |p: &Pledge, status: RightStatus| RecordRightRequest {
        request_id: request_id(),
        right_kind: RightKind::InventionPatent as i32,
        right_number: p.rights[0].number.clone(),
        state: Some(RightState {
            holder: Some(p.pledgor.clone().unwrap()),
            status: status as i32,
            status_since: "2024-01-01".to_owned(),
            ..Default::default()
        }),
    };
    risk.record_right(lost(binjiang, RightStatus::Lapsed)).await.unwrap();
    risk.record_right(lost(nanjing, RightStatus::Invalidated)).await.unwrap();
    let valuation = |p: &Pledge, value: &str| RecordValuationRequest {
        request_id: request_id(),
        valuation: Some(Valuation {
            pledge_id: p.id.clone(),
            appraiser: "中联资产评估集团有限公司".to_owned(),
            method: ValuationMethod::Income as i32,
            value: value.to_owned(),
            valued_on: "2021-01-15".to_owned(),
            ..Default::default()
        }),
    };
    risk.record_valuation(valuation(xihu, "600000")).await.unwrap();
    risk.record_valuation(valuation(nanjing, "1000000")).await.unwrap();
    let default = |p: &Pledge, outstanding: &str, loss: &str| RecordDefaultRequest {
        request_id: request_id(),
        pledge_id: p.id.clone(),
        defaulted_on: "2021-06-01".to_owned(),
        outstanding_principal: outstanding.to_owned(),
        loss: loss.to_owned(),
    };
    risk.record_default(default(xihu, "120000", "50000")).await.unwrap();
    risk.record_default(default(nanjing, "100000", "")).await.unwrap();

    // The budget left is this year's (China time): the claim is filed, decided and paid today.
    let today = chrono::Utc::now().with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap()).date_naive();
    let programme = Programme {
        name: "杭州市知识产权质押融资风险补偿".to_owned(),
        region_code: "330100".to_owned(),
        budget_per_year: "1000000".to_owned(),
        tiers: vec![Tier { loan_up_to: "1000000".to_owned(), fund_share_percent: "40".to_owned() }],
        eligible_banks: vec![BANK_A.to_owned()],
        // Covers Xihu's loan, registered in 2019, and is in force this year.
        valid_from: "2019-01-01".to_owned(),
        valid_to: format!("{}-12-31", chrono::Datelike::year(&today) + 1),
        ..Default::default()
    };
    let create = CreateProgrammeRequest { request_id: request_id(), programme: Some(programme) };
    let programme_id = risk.create_programme(create).await.unwrap().into_inner().id;
    let file = FileClaimRequest {
        request_id: request_id(),
        programme_id,
        pledge_id: xihu.id.clone(),
        filed_on: today.to_string(),
    };
    let claim = risk.file_claim(file).await.unwrap().into_inner();
    assert_eq!(claim.fund_amount, "20000.00");
    let decide = DecideClaimRequest {
        request_id: request_id(),
        id: claim.id.clone(),
        approve: true,
        decided_on: today.to_string(),
        note: String::new(),
    };
    risk.decide_claim(decide).await.unwrap();
    let pay = RecordPaymentRequest {
        request_id: request_id(),
        id: claim.id,
        paid_on: today.to_string(),
        amount: "15000".to_owned(),
    };
    risk.record_payment(pay).await.unwrap();
}

/// The risk cards' figures, in the page's order: at risk, pledges at risk, defaulted,
/// non-performing ratio, appraised value, loan-to-value, compensation, programme budget (empty
/// when hidden).
async fn risk_totals(browser: &Browser) -> Vec<String> {
    let mut figures = Vec::new();
    for id in ["at-risk", "at-risk-count", "defaulted", "npl", "appraised", "ltv", "compensation", "budget"] {
        figures.push(browser.text(&format!("#total-{id}")).await);
    }
    figures
}

/// The risk cells of the row keyed `key` (after name, secured amount, pledges and the two
/// credit cells): at risk, defaulted, NPL, LTV, compensation and, in the region table, budget left.
fn risk_cells<'a>(rows: &'a [(String, Vec<String>)], key: &str) -> &'a [String] {
    &rows.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("no row {key} in {rows:?}")).1[5..]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_the_risk_side_at_every_level_and_a_bank_only_its_own() {
    let server = TestServer::start().await;
    let seeded = seed(&server).await;
    seed_risk(&server, &seeded).await;
    let browser = Browser::start(&[]).await;

    browser.sign_in(&server, &server.admin_token).await;
    browser.ready("").await;
    // At risk: Binjiang 200,000 + Nanjing 400,000. Defaulted: 120,000 + 100,000 of 1,000,000
    // secured. Appraised: 600,000 + 1,000,000 for 700,000 secured. Hangzhou's budget less 20,000.
    assert_eq!(
        risk_totals(&browser).await,
        [
            "600,000.00",
            "2",
            "220,000.00",
            "22.00 %",
            "1,600,000.00",
            "43.75 %",
            "20,000.00 / 15,000.00",
            "980,000.00 / 1,000,000.00"
        ]
    );
    let headers: Vec<String> = serde_json::from_value(
        browser
            .client
            .execute("return [...document.querySelectorAll('#regions th.risk')].map(th => th.textContent);", vec![])
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        headers,
        [
            "At risk (yuan)",
            "Defaulted (yuan)",
            "Non-performing ratio",
            "Loan-to-value",
            "Compensation claimed / paid (yuan)",
            "Programme budget left (yuan)"
        ]
    );
    let provinces = browser.rows("regions").await;
    assert_eq!(
        risk_cells(&provinces, "330000"),
        ["200,000.00", "120,000.00", "24.00 %", "50.00 %", "20,000.00 / 15,000.00", "980,000.00"]
    );
    assert_eq!(
        risk_cells(&provinces, "320000"),
        ["400,000.00", "100,000.00", "25.00 %", "40.00 %", "0.00 / 0.00", "0.00"]
    );
    assert_eq!(risk_cells(&provinces, "440000"), ["0.00", "0.00", "0.00 %", "–", "0.00 / 0.00", "0.00"]);
    assert_eq!(
        risk_cells(&provinces, "110000"),
        ["0.00", "0.00", "–", "–", "0.00 / 0.00", "0.00"],
        "no secured amount: no ratio"
    );
    let pledgees = browser.rows("pledgees").await;
    assert_eq!(
        risk_cells(&pledgees, BANK_A),
        ["200,000.00", "120,000.00", "20.00 %", "50.00 %", "20,000.00 / 15,000.00"]
    );
    assert_eq!(risk_cells(&pledgees, BANK_B), ["400,000.00", "100,000.00", "25.00 %", "40.00 %", "0.00 / 0.00"]);

    // Drill down: Zhejiang, then Hangzhou (the programme's region), then its counties.
    browser.click("#regions a[data-key='330000']").await;
    browser.ready("330000").await;
    let zhejiang = [
        "200,000.00",
        "1",
        "120,000.00",
        "24.00 %",
        "600,000.00",
        "50.00 %",
        "20,000.00 / 15,000.00",
        "980,000.00 / 1,000,000.00",
    ];
    assert_eq!(risk_totals(&browser).await, zhejiang);
    let cities = browser.rows("regions").await;
    assert_eq!(
        risk_cells(&cities, "330100"),
        ["200,000.00", "120,000.00", "24.00 %", "50.00 %", "20,000.00 / 15,000.00", "980,000.00"]
    );
    assert_eq!(risk_cells(&cities, "330200"), ["0.00", "0.00", "–", "–", "0.00 / 0.00", "0.00"]);
    browser.click("#regions a[data-key='330100']").await;
    browser.ready("330100").await;
    assert_eq!(risk_totals(&browser).await, zhejiang);
    // A county holds no programme of its own: Hangzhou's budget is the city's.
    let counties = browser.rows("regions").await;
    assert_eq!(
        risk_cells(&counties, "330106"),
        ["0.00", "120,000.00", "40.00 %", "50.00 %", "20,000.00 / 15,000.00", "0.00"]
    );
    assert_eq!(risk_cells(&counties, "330108"), ["200,000.00", "0.00", "0.00 %", "–", "0.00 / 0.00", "0.00"]);
    let pledgees = browser.rows("pledgees").await;
    assert_eq!(pledgees.len(), 1);
    assert_eq!(
        risk_cells(&pledgees, BANK_A),
        ["200,000.00", "120,000.00", "24.00 %", "50.00 %", "20,000.00 / 15,000.00"]
    );

    // Bank B sees its own risk only, and no programme budget.
    let bank = server.token("bank-b", TokenRole::Bank, BANK_B, "").await;
    browser.sign_in(&server, &bank).await;
    browser.ready("").await;
    assert_eq!(
        risk_totals(&browser).await,
        ["400,000.00", "1", "100,000.00", "25.00 %", "1,000,000.00", "40.00 %", "0.00 / 0.00", ""]
    );
    let budget = browser.client.find(Locator::Id("total-budget-card")).await.unwrap();
    assert!(!budget.is_displayed().await.unwrap(), "a bank has no programme budget");
    let provinces = browser.rows("regions").await;
    assert_eq!(
        risk_cells(&provinces, "320000"),
        ["400,000.00", "100,000.00", "25.00 %", "40.00 %", "0.00 / 0.00", "–"]
    );
    assert_eq!(
        risk_cells(&provinces, "330000"),
        ["0.00", "0.00", "–", "–", "0.00 / 0.00", "–"],
        "bank A's Zhejiang is not bank B's"
    );
    let pledgees = browser.rows("pledgees").await;
    assert_eq!(pledgees.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), [BANK_B]);
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
