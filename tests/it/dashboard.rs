//! The IP-office dashboard in a real browser (headless Chromium driven through chromedriver): it
//! loads from the binary, shows the exact totals of seeded data, drills down province → city →
//! county, lists pledgees with their credit utilisation and a trend, and shows only what the
//! viewer's token may see; the risk side (at risk, defaults, valuations, compensation, programme
//! budgets) of seeded risk data in the totals and both tables, at every level of the drill-down.
//! Also the JSON API's refusals, called by the page's own `fetch`. Then what Chinese IP offices
//! need: the page in Chinese for a browser that prefers it and in English otherwise, switched and
//! remembered; amounts in 元, 万元 and 亿元 (exactly rounded, the exact yuan in the title); the
//! regulator's report compared cell by cell with `GetStatistics` called over gRPC (right-kind
//! filter, threshold, drill-down, units and the risk side's flows of the period included); CSV
//! downloads whose figures are the API's; and the pledges' tab: a lookup, a pledge, and its
//! printable certificate with the verifiable record of `GetPledgeCertificate` and its QR code.

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
    /// A browser preferring US English, as the tests before the Chinese page assumed.
    async fn start(extra_args: &[&str]) -> Browser {
        Browser::launch(extra_args, "en-US,en", None).await
    }

    /// A browser whose preferred languages are `languages` (Accept-Language form, e.g.
    /// "zh-CN,zh"), downloading into `downloads` when given.
    async fn launch(extra_args: &[&str], languages: &str, downloads: Option<&std::path::Path>) -> Browser {
        let chromedriver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".to_owned());
        let chromedriver = crate::tools::require(&chromedriver, "chromium-driver");
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
        crate::tools::require(&chromium, "chromium");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): `{}` installs chromium and chromium-driver",
                    chromedriver.display(),
                    crate::tools::SETUP
                )
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
        // navigator.languages comes from the profile's accept_languages; --lang sets the UI's.
        let lang_arg = format!("--lang={}", languages.split(',').next().unwrap_or("en-US"));
        args.push(&lang_arg);
        args.extend_from_slice(extra_args);
        let mut prefs = serde_json::json!({"intl": {"accept_languages": languages}});
        if let Some(dir) = downloads {
            prefs["download"] = serde_json::json!({"default_directory": dir, "prompt_for_download": false});
        }
        let mut capabilities = serde_json::Map::new();
        capabilities
            .insert("goog:chromeOptions".into(), serde_json::json!({"binary": chromium, "args": args, "prefs": prefs}));
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
        self.shows(&format!("body[data-state='ready'][data-region='{region}']")).await;
    }

    /// Waits until the report view has rendered `region` with right kind `kind`.
    async fn report_ready(&self, region: &str, kind: &str) {
        self.shows(&format!(
            "body[data-state='ready'][data-view='report'][data-region='{region}'][data-kind='{kind}']"
        ))
        .await;
    }

    /// Waits until the pledges' tab has rendered `view` (pledges, pledge or certificate) of the
    /// pledge `id` (empty for the lookup).
    async fn pledge_ready(&self, view: &str, id: &str) {
        self.shows(&format!("body[data-state='ready'][data-view='{view}'][data-pledge='{id}']")).await;
    }

    /// Waits until an element matches `selector`; says what the error box says when none does.
    async fn shows(&self, selector: &str) {
        if let Err(e) =
            self.client.wait().at_most(Duration::from_secs(WAIT_S_MAX)).for_element(Locator::Css(selector)).await
        {
            let error = self.text("#error").await;
            panic!("the page never showed {selector}: {e}; error box: {error:?}");
        }
    }

    /// The value of a script expression over the page.
    async fn eval<T: serde::de::DeserializeOwned>(&self, expression: &str) -> T {
        let value = self.client.execute(&format!("return {expression};"), vec![]).await.unwrap();
        serde_json::from_value(value).unwrap_or_else(|e| panic!("{expression}: {e}"))
    }

    async fn title(&self, css: &str) -> String {
        let element = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        element.attr("title").await.unwrap().unwrap_or_default()
    }

    /// Chooses `value` in a `<select>`, as a viewer does.
    async fn choose(&self, css: &str, value: &str) {
        let select = self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
        select.select_by_value(value).await.unwrap();
    }

    /// Types into an input by setting its value (date inputs take keys in the browser's locale).
    async fn set_value(&self, css: &str, value: &str) {
        let script = "document.querySelector(arguments[0]).value = arguments[1];";
        self.client.execute(script, vec![css.into(), value.into()]).await.unwrap();
    }

    /// The texts of a table's header cells.
    async fn headers(&self, table: &str) -> Vec<String> {
        self.headers_of(&format!("#{table} thead")).await
    }

    /// The texts of the header cells within `css`.
    async fn headers_of(&self, css: &str) -> Vec<String> {
        self.eval(&format!("[...document.querySelectorAll(\"{css} th\")].map(th => th.textContent)")).await
    }

    async fn text(&self, css: &str) -> String {
        self.client.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).text().await.unwrap()
    }

    /// Every row of a table as (data-key, [cell texts]).
    async fn rows(&self, table: &str) -> Vec<(String, Vec<String>)> {
        let script = format!(
            "return [...document.querySelectorAll('#{table} tbody tr')].map(tr => \
             [tr.dataset.key || tr.dataset.asOf || '', [...tr.querySelectorAll('td')].map(td => \
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

/// The alerts panel of the admin's whole scope, in English in yuan, then in Chinese in 万元: the
/// two rights flagged today (recorded today) and the two defaults of 2021-06-01 unresolved for
/// more than 90 days, by county (Nanjing, Xihu, Binjiang). Leaves the page in English and yuan.
async fn check_alerts(browser: &Browser, seeded: &[Pledge]) {
    let in_county = |county: &str| seeded.iter().find(|p| p.county_code == county).unwrap();
    let (xihu, binjiang, nanjing) = (in_county("330106"), in_county("330108"), in_county("320106"));
    let today = chrono::Utc::now().with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap()).date_naive();
    let defaulted_on = chrono::NaiveDate::from_ymd_opt(2021, 6, 1).unwrap();
    let age = count_text(u64::try_from((today - defaulted_on).num_days()).unwrap());
    let key = |p: &Pledge, kind: &str| format!("{} {kind}", p.id);
    let row = |p: &Pledge, kind: &str, arose: String, secured: &str, detail: String| {
        vec![kind.to_owned(), p.id[..8].to_owned(), p.county_code.clone(), arose, secured.to_owned(), detail]
    };
    let english = |d: chrono::NaiveDate| d.format("%b %-d, %Y").to_string();
    let expected_en = vec![
        row(
            nanjing,
            "Newly at risk",
            english(today),
            "400,000.00",
            format!("{}: invalidated", nanjing.rights[0].number),
        ),
        row(
            nanjing,
            "Default unresolved",
            "Aug 30, 2021".into(),
            "400,000.00",
            format!("defaulted on Jun 1, 2021, unresolved for {age} days"),
        ),
        row(
            xihu,
            "Default unresolved",
            "Aug 30, 2021".into(),
            "300,000.00",
            format!("defaulted on Jun 1, 2021, unresolved for {age} days"),
        ),
        row(binjiang, "Newly at risk", english(today), "200,000.00", format!("{}: lapsed", binjiang.rights[0].number)),
    ];
    let keys = |rows: &[(String, Vec<String>)]| rows.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    let expected_keys = vec![
        key(nanjing, "NEWLY_AT_RISK"),
        key(nanjing, "DEFAULT_UNRESOLVED"),
        key(xihu, "DEFAULT_UNRESOLVED"),
        key(binjiang, "NEWLY_AT_RISK"),
    ];
    assert_eq!(browser.text("#alerts-heading").await, "Alerts");
    assert_eq!(
        browser.headers("alerts").await,
        ["Alert", "Pledge", "Region code", "Arose on", "Secured amount (yuan)", "Details"]
    );
    let rows = browser.rows("alerts").await;
    assert_eq!(keys(&rows), expected_keys);
    assert_eq!(rows.into_iter().map(|(_, cells)| cells).collect::<Vec<_>>(), expected_en);

    browser.choose("#lang", "zh-CN").await;
    browser.choose("#unit", "wan").await;
    let chinese = |d: chrono::NaiveDate| d.format("%Y年%-m月%-d日").to_string();
    assert_eq!(browser.text("#alerts-heading").await, "预警");
    assert_eq!(
        browser.headers("alerts").await,
        ["预警类型", "质押登记", "地区代码", "发生日期", "被担保债权数额（万元）", "详情"]
    );
    let rows = browser.rows("alerts").await;
    assert_eq!(keys(&rows), expected_keys);
    let cells: Vec<Vec<String>> = rows.into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        cells[0],
        [
            "新增风险".to_owned(),
            nanjing.id[..8].to_owned(),
            "320106".to_owned(),
            chinese(today),
            "40.00".to_owned(),
            format!("{}：被宣告无效", nanjing.rights[0].number),
        ]
    );
    assert_eq!(
        cells[2],
        [
            "违约未处置".to_owned(),
            xihu.id[..8].to_owned(),
            "330106".to_owned(),
            "2021年8月30日".to_owned(),
            "30.00".to_owned(),
            format!("2021年6月1日 违约，已 {age} 天未处置"),
        ]
    );
    assert_eq!(browser.title("#alerts tbody tr:nth-child(3) td.secured").await, "300,000.00 元");
    browser.choose("#lang", "en").await;
    browser.choose("#unit", "yuan").await;
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

    check_alerts(&browser, &seeded).await;

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

// --- Languages, units, the regulator's report and CSV exports ------------------------------------

/// Digits grouped by thousands, as both the zh-CN and the English number formats write them.
fn grouped(digits: &str) -> String {
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// What the page must show for `amount` yuan in units of 10^`exponent` yuan: 2 decimals, rounded
/// half away from zero, grouped by thousands. Computed in fen, exactly.
fn in_unit(amount: &str, exponent: u32) -> String {
    let fen = crate::statistics::fen(if amount.is_empty() { "0" } else { amount });
    let divisor = 10i128.pow(exponent);
    let mut hundredths = fen / divisor;
    if 2 * (fen % divisor).abs() >= divisor && exponent > 0 {
        hundredths += fen.signum();
    }
    let sign = if hundredths < 0 { "-" } else { "" };
    let h = hundredths.abs();
    format!("{sign}{}.{:02}", grouped(&(h / 100).to_string()), h % 100)
}

/// A percentage of the API as the page shows it: its own digits, grouped, with the language's
/// suffix (" %" in English, "%" in Chinese); a dash when there is none.
fn percent_text(value: &str, suffix: &str) -> String {
    if value.is_empty() {
        return "–".to_owned();
    }
    let (sign, digits) = value.strip_prefix('-').map_or(("", value), |d| ("-", d));
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let fraction = if fraction.is_empty() { String::new() } else { format!(".{fraction}") };
    format!("{sign}{}{fraction}{suffix}", grouped(whole))
}

fn count_text(n: u64) -> String {
    grouped(&n.to_string())
}

/// Pledges for the report, besides `seed`'s invention patents of 2019 and 2021 (returns this
/// year by the local clock, which is the browser's, so its default period is this year around New
/// Year too): in Zhejiang a trademark alone (Ningbo, 2019), a copyright alone (Wenzhou,
/// 2020), a patent with a trademark (Xihu, 2020); last year a small patent in Ningbo; this year a
/// 35,000,000.00 trademark in Ningbo (above the default inclusive threshold) and a design in Binjiang.
/// Also returns these pledges as registered.
async fn seed_report(server: &TestServer) -> (i32, Vec<Pledge>) {
    let year = chrono::Datelike::year(&chrono::Local::now().date_naive());
    let right = |kind: RightKind, number: String| Right {
        kind: kind as i32,
        number,
        title: "R".to_owned(),
        expires_on: "2060-01-01".to_owned(),
        ..Default::default()
    };
    // Filed last year, in force for five more years: valid for every kind of patent.
    let patent = |kind: RightKind, code: u32, n: u64| {
        let filed = format!("{}{code}{n:07}", year - 1);
        let number = ipledger::domain::ident::PatentNumber::complete(&filed).unwrap();
        Right { expires_on: format!("{}-01-01", year + 5), ..right(kind, number) }
    };
    let trademark = |n: u64| right(RightKind::Trademark, format!("{}", 30_000_000 + n));
    let copyright = |n: u64| right(RightKind::Copyright, format!("2019SR{n:07}"));
    let mut pledges = server.pledges().await;
    let this_year = format!("{year}-01-01");
    let last_year = format!("{}-03-01", year - 1);
    let extra: [(&str, &str, &str, Vec<Right>); 6] = [
        ("330205", "250000.00", "2019-08-01", vec![trademark(unique())]),
        ("330302", "80000.00", "2020-03-01", vec![copyright(unique())]),
        (
            "330106",
            "1200000.00",
            "2020-05-01",
            vec![patent(RightKind::InventionPatent, 1, unique()), trademark(unique())],
        ),
        ("330205", "12345.67", &last_year, vec![patent(RightKind::UtilityModel, 2, unique())]),
        ("330205", "35000000.00", &this_year, vec![trademark(unique())]),
        ("330108", "4500000.00", &this_year, vec![patent(RightKind::DesignPatent, 3, unique())]),
    ];
    let mut registered = Vec::new();
    for (county, amount, on, rights) in extra {
        let mut p = pledge(county, amount);
        p.registered_on = on.to_owned();
        p.debt_term_start = on.to_owned();
        p.debt_term_end = format!("{}-12-31", year + 1);
        p.rights = rights;
        registered.push(pledges.register_pledge(register(p)).await.unwrap().into_inner());
    }
    (year, registered)
}

/// The risk side's flows on `seed_report`'s pledges, under a Zhejiang programme (every bank, 50% of
/// the loss on loans up to 5,000,000.00), through the gRPC API with the admin token:
/// - Wenzhou's copyright of 2020 defaults on 2020-09-01 with 60,000.00 outstanding and 40,000.00
///   lost; its claim (20,000.00) is filed in 2020, approved, paid 10,000.00 in 2020 and 5,000.00 on
///   1 January this year: a payment counts in the period of its own date;
/// - Ningbo's small patent of last year defaults on 1 January this year with 12,345.67 outstanding
///   and 10,000.01 lost; its claim (5,000.00, the half rounded down) is filed, approved and paid
///   4,321.09 that day: flows of this year on a pledge registered before it;
/// - Binjiang's design of this year defaults that day with 3,000,000.50 outstanding, the loss not
///   known yet (no claim).
///
/// This year, by the local clock as `seed_report`'s: 2 defaults, 3,012,346.17 outstanding, 5,000.00
/// claimed, 9,321.09 paid; in 2020: 1 default, 60,000.00, 20,000.00 claimed, 10,000.00 paid.
async fn seed_report_risk(server: &TestServer, year: i32, seeded: &[Pledge]) {
    let find = |county: &str, amount: &str| {
        seeded.iter().find(|p| p.county_code == county && p.secured_amount == amount).unwrap()
    };
    let (wenzhou, ningbo, binjiang) =
        (find("330302", "80000.00"), find("330205", "12345.67"), find("330108", "4500000.00"));
    let mut risk = RiskServiceClient::with_interceptor(server.channel().await, Bearer::new(&server.admin_token));
    let programme = Programme {
        name: "浙江省知识产权质押融资风险补偿".to_owned(),
        region_code: "330000".to_owned(),
        budget_per_year: "2000000".to_owned(),
        tiers: vec![Tier { loan_up_to: "5000000".to_owned(), fund_share_percent: "50".to_owned() }],
        valid_from: "2019-01-01".to_owned(),
        valid_to: format!("{}-12-31", year + 1),
        ..Default::default()
    };
    let create = CreateProgrammeRequest { request_id: request_id(), programme: Some(programme) };
    let programme_id = risk.create_programme(create).await.unwrap().into_inner().id;
    let january = format!("{year}-01-01");
    let january = january.as_str();
    // (pledge, defaulted on, outstanding, loss, the fund's share expected, filed on, decided on,
    // payments)
    type Flows<'a> = (&'a Pledge, &'a str, &'a str, &'a str, &'a str, &'a str, &'a str, Vec<(&'a str, &'a str)>);
    let flows: [Flows; 2] = [
        (
            wenzhou,
            "2020-09-01",
            "60000.00",
            "40000.00",
            "20000.00",
            "2020-10-01",
            "2020-11-01",
            vec![("2020-12-01", "10000.00"), (january, "5000.00")],
        ),
        (ningbo, january, "12345.67", "10000.01", "5000.00", january, january, vec![(january, "4321.09")]),
    ];
    for (p, defaulted_on, outstanding, loss, fund, filed_on, decided_on, payments) in flows {
        let default = RecordDefaultRequest {
            request_id: request_id(),
            pledge_id: p.id.clone(),
            defaulted_on: defaulted_on.to_owned(),
            outstanding_principal: outstanding.to_owned(),
            loss: loss.to_owned(),
        };
        risk.record_default(default).await.unwrap();
        let file = FileClaimRequest {
            request_id: request_id(),
            programme_id: programme_id.clone(),
            pledge_id: p.id.clone(),
            filed_on: filed_on.to_owned(),
        };
        let claim = risk.file_claim(file).await.unwrap().into_inner();
        assert_eq!(claim.fund_amount, fund);
        let decide = DecideClaimRequest {
            request_id: request_id(),
            id: claim.id.clone(),
            approve: true,
            decided_on: decided_on.to_owned(),
            note: String::new(),
        };
        risk.decide_claim(decide).await.unwrap();
        for (paid_on, amount) in payments {
            let pay = RecordPaymentRequest {
                request_id: request_id(),
                id: claim.id.clone(),
                paid_on: paid_on.to_owned(),
                amount: amount.to_owned(),
            };
            risk.record_payment(pay).await.unwrap();
        }
    }
    let default = RecordDefaultRequest {
        request_id: request_id(),
        pledge_id: binjiang.id.clone(),
        defaulted_on: january.to_owned(),
        outstanding_principal: "3000000.50".to_owned(),
        loss: String::new(),
    };
    risk.record_default(default).await.unwrap();
}

/// The report table's cells of a statistics row, as the page must show them.
fn report_cells(name: &str, r: &StatisticsRow, exponent: u32, suffix: &str) -> Vec<String> {
    vec![
        name.to_owned(),
        in_unit(&r.registered_amount, exponent),
        count_text(r.registrations),
        count_text(r.enterprises),
        count_text(r.patents),
        count_text(r.trademarks),
        count_text(r.copyrights),
        in_unit(&r.previous_registered_amount, exponent),
        percent_text(&r.amount_growth_percent, suffix),
        percent_text(&r.inclusive_share_percent, suffix),
        count_text(r.defaults),
        in_unit(&r.defaulted_amount, exponent),
        in_unit(&r.compensation_claimed, exponent),
        in_unit(&r.compensation_paid, exponent),
    ]
}

/// Asks `request` over gRPC and compares every cell of the page's report table with the answer:
/// child regions in code order, then the total row named `total`.
async fn check_report(
    browser: &Browser,
    exposure: &mut ipledger::proto::exposure_service_client::ExposureServiceClient<Authed>,
    request: GetStatisticsRequest,
    (exponent, suffix, total): (u32, &str, &str),
) -> GetStatisticsResponse {
    let got = exposure.get_statistics(request.clone()).await.unwrap().into_inner();
    let mut expected: Vec<(String, Vec<String>)> =
        got.rows.iter().map(|r| (r.key.clone(), report_cells(&r.name, r, exponent, suffix))).collect();
    expected.push(("total".to_owned(), report_cells(total, got.total.as_ref().unwrap(), exponent, suffix)));
    assert_eq!(browser.rows("report-table").await, expected, "{request:?}");
    got
}

fn statistics_request(
    region: &str,
    from: &str,
    to: &str,
    kinds: &[RightKind],
    threshold: &str,
) -> GetStatisticsRequest {
    GetStatisticsRequest {
        region_code: region.to_owned(),
        from: from.to_owned(),
        to: to.to_owned(),
        group_by: ExposureGroupBy::ChildRegion as i32,
        inclusive_threshold: threshold.to_owned(),
        unit: AmountUnit::Yuan as i32,
        right_kinds: kinds.iter().map(|k| *k as i32).collect(),
    }
}

const PATENTS: [RightKind; 3] = [RightKind::InventionPatent, RightKind::UtilityModel, RightKind::DesignPatent];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_speaks_chinese_or_english_and_remembers_the_choice() {
    let server = TestServer::start().await;
    seed(&server).await;
    let browser = Browser::launch(&[], "zh-CN,zh", None).await;
    browser.sign_in(&server, &server.admin_token).await;
    browser.ready("").await;
    assert_eq!(browser.eval::<String>("navigator.languages[0]").await, "zh-CN");
    let page_in_chinese = || async {
        assert_eq!(browser.eval::<String>("document.documentElement.lang").await, "zh-CN");
        assert_eq!(browser.text("h1").await, "知识产权质押融资监测");
        assert_eq!(browser.text("#who").await, "权限范围：全国");
        assert_eq!(browser.text("#tab-report").await, "统计报表");
        assert_eq!(browser.text("#summary .card h3").await, "被担保债权数额（元）");
        assert_eq!(browser.text("#total-secured").await, "1,000,000.00");
        // Chinese writes a percentage without a space.
        assert_eq!(browser.text("#total-utilisation").await, "30.0%");
        let headers = browser.headers("regions").await;
        assert_eq!(headers[..5], ["地区", "被担保债权数额（元）", "质押登记（笔）", "出质企业（家）", "授信使用率"]);
        assert_eq!(
            headers[5..],
            [
                "风险敞口（元）",
                "违约金额（元）",
                "不良率",
                "质押率",
                "风险补偿 申请 / 已付（元）",
                "风险补偿资金余额（元）"
            ]
        );
        assert_eq!(browser.rows("regions").await[0].1[..5], ["浙江省", "500,000.00", "2", "2", "30.0%"]);
        let trend = browser.rows("trend").await;
        let year_end = trend.iter().find(|(d, _)| d == "2020-12-31").unwrap();
        assert_eq!(year_end.1, ["2020年12月31日", "900,000.00", "3"]);
        assert_eq!(browser.text("button[data-export='regions']").await, "导出 CSV");
    };
    page_in_chinese().await;

    // The switch: English, every label and format at once, without asking the server again.
    browser.choose("#lang", "en").await;
    let page_in_english = || async {
        assert_eq!(browser.eval::<String>("document.documentElement.lang").await, "en");
        assert_eq!(browser.text("h1").await, "IP pledge exposure");
        assert_eq!(browser.text("#who").await, "Scope: 全国", "region names stay as the API gives them");
        assert_eq!(browser.text("#tab-report").await, "Regulator report");
        assert_eq!(browser.text("#summary .card h3").await, "Secured amount (yuan)");
        assert_eq!(browser.text("#total-utilisation").await, "30.0 %");
        assert_eq!(browser.headers("regions").await[..3], ["Region", "Secured amount (yuan)", "Pledges"]);
        let trend = browser.rows("trend").await;
        let year_end = trend.iter().find(|(d, _)| d == "2020-12-31").unwrap();
        assert_eq!(year_end.1, ["Dec 31, 2020", "900,000.00", "3"]);
    };
    page_in_english().await;
    // Remembered: a reload (the token stays in the tab) is still in English, and so is the
    // report view.
    browser.client.refresh().await.unwrap();
    browser.ready("").await;
    page_in_english().await;
    browser.click("#tab-report").await;
    browser.report_ready("", "all").await;
    assert_eq!(browser.headers("report-table").await[..3], ["Region", "Registered amount (yuan)", "Registrations"]);
    // And back to Chinese, remembered as well.
    browser.choose("#lang", "zh-CN").await;
    assert_eq!(browser.text("#who").await, "权限范围：全国");
    assert_eq!(browser.headers("report-table").await[..3], ["地区", "担保债权数额（元）", "质押登记（笔）"]);
    assert_eq!(browser.text("#report-table tr.total td").await, "合计");
    browser.click("#tab-overview").await;
    browser.ready("").await;
    browser.client.refresh().await.unwrap();
    browser.ready("").await;
    page_in_chinese().await;
    browser.close().await;

    // A browser preferring English starts in English.
    let english = Browser::launch(&[], "en-US,en", None).await;
    english.sign_in(&server, &server.admin_token).await;
    english.ready("").await;
    assert_eq!(english.eval::<String>("document.documentElement.lang").await, "en");
    assert_eq!(english.text("#who").await, "Scope: 全国");
    english.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_amounts_in_yuan_wan_and_yi_with_the_exact_yuan_on_hover() {
    let server = TestServer::start().await;
    seed(&server).await;
    // 100,500,000.00 in Beijing: 1.005 亿元, a half that a float rounds down (100500000 / 1e8 is
    // 1.00499999…, and toFixed(2) gives 1.00); exactly, half up, it is 1.01.
    server.pledges().await.register_pledge(register(pledge("110105", "100500000.00"))).await.unwrap();
    let browser = Browser::start(&[]).await;
    browser.sign_in(&server, &server.admin_token).await;
    browser.ready("").await;
    let figure = |key: &str| format!("#regions tr[data-key='{key}'] td.secured .figure");
    // (unit, its name, total, Beijing, Zhejiang)
    let expected = [
        ("yuan", "yuan", "101,500,000.00", "100,500,000.00", "500,000.00"),
        ("wan", "10,000 yuan", "10,150.00", "10,050.00", "50.00"),
        ("yi", "100 million yuan", "1.02", "1.01", "0.01"),
    ];
    for (unit, name, total, beijing, zhejiang) in expected {
        browser.choose("#unit", unit).await;
        assert_eq!(browser.text("#summary .card h3").await, format!("Secured amount ({name})"));
        assert_eq!(browser.text("#total-secured").await, total, "{unit}");
        assert_eq!(browser.title("#total-secured").await, "101,500,000.00 yuan", "{unit}: the exact figure on hover");
        assert_eq!(browser.text(&figure("110000")).await, beijing, "{unit}");
        assert_eq!(browser.title(&figure("110000")).await, "100,500,000.00 yuan", "{unit}");
        assert_eq!(browser.text(&figure("330000")).await, zhejiang, "{unit}");
        assert_eq!(browser.title(&figure("330000")).await, "500,000.00 yuan", "{unit}");
        assert_eq!(browser.title("#total-credit").await, "300,000.00 yuan / 1,000,000.00 yuan", "{unit}");
        assert_eq!(browser.rows("trend").await.last().unwrap().1[1], total, "{unit}");
        let headers = browser.headers("regions").await;
        assert_eq!(headers[1], format!("Secured amount ({name})"));
        assert_eq!(headers[5], format!("At risk ({name})"));
    }
    // The unit is remembered, and names itself in Chinese as 亿元.
    browser.client.refresh().await.unwrap();
    browser.ready("").await;
    assert_eq!(browser.text("#total-secured").await, "1.02");
    browser.choose("#lang", "zh-CN").await;
    assert_eq!(browser.text("#summary .card h3").await, "被担保债权数额（亿元）");
    assert_eq!(browser.title("#total-secured").await, "101,500,000.00 元");
    browser.choose("#unit", "wan").await;
    assert_eq!(browser.headers("regions").await[1], "被担保债权数额（万元）");
    assert_eq!(browser.text(&figure("110000")).await, "10,050.00");
    browser.close().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_report_equals_get_statistics_cell_by_cell() {
    let server = TestServer::start().await;
    seed(&server).await;
    let (year, report_pledges) = seed_report(&server).await;
    seed_report_risk(&server, year, &report_pledges).await;
    let mut exposure = server.exposure().await;
    let browser = Browser::start(&[]).await;
    browser.sign_in(&server, &server.admin_token).await;
    browser.ready("").await;

    // The tab opens the report of the region in view: this calendar year, every right, the
    // default threshold.
    browser.click("#tab-report").await;
    browser.report_ready("", "all").await;
    let (from, to) = (format!("{year}-01-01"), format!("{year}-12-31"));
    assert_eq!(browser.eval::<String>("document.getElementById('report-from').value").await, from);
    assert_eq!(browser.eval::<String>("document.getElementById('report-to').value").await, to);
    assert_eq!(browser.eval::<String>("document.getElementById('report-threshold').value").await, "10000000.00");
    assert_eq!(browser.eval::<String>("document.getElementById('report-kind').value").await, "all");
    let en = (0, " %", "Total");
    let got = check_report(&browser, &mut exposure, statistics_request("", &from, &to, &[], "10000000.00"), en).await;
    assert_eq!(got.rows.len(), 31, "every province");
    assert_eq!(got.total.as_ref().unwrap().registered_amount, "39500000.00", "this year's two pledges");
    assert_eq!(got.total.as_ref().unwrap().inclusive_share_percent, "50.00", "35,000,000.00 is above 10,000,000.00");
    let headers = browser.headers("report-table").await;
    assert_eq!(headers[9], "Inclusive share (≤ 10,000,000.00 yuan)");
    assert_eq!(
        headers[10..],
        ["Defaults", "Defaulted (yuan)", "Compensation claimed (yuan)", "Compensation paid (yuan)"]
    );
    // The risk side's flows of this year, on pledges registered this year and before.
    let flows = |r: &StatisticsRow| {
        (r.defaults, r.defaulted_amount.clone(), r.compensation_claimed.clone(), r.compensation_paid.clone())
    };
    let this_year = (2, "3012346.17".to_owned(), "5000.00".to_owned(), "9321.09".to_owned());
    assert_eq!(flows(got.total.as_ref().unwrap()), this_year);
    assert_eq!(flows(got.rows.iter().find(|r| r.key == "330000").unwrap()), this_year);
    // In 亿元 they round to nothing; the exact yuan stay in the tooltip.
    browser.choose("#unit", "yi").await;
    let request = statistics_request("", &from, &to, &[], "10000000.00");
    check_report(&browser, &mut exposure, request, (8, " %", "Total")).await;
    assert_eq!(browser.headers("report-table").await[11], "Defaulted (100 million yuan)");
    assert_eq!(browser.title("#report-table tr.total td.defaulted").await, "3,012,346.17 yuan");
    assert_eq!(browser.title("#report-table tr.total td.claimed").await, "5,000.00 yuan");
    assert_eq!(browser.title("#report-table tr.total td.paid").await, "9,321.09 yuan");
    browser.choose("#unit", "yuan").await;
    // The chart: a bar per child region, labelled with the table's figure.
    let bars: usize = browser.eval("document.querySelectorAll('#report-chart svg rect.chart-bar').length").await;
    assert_eq!(bars, 31);
    let labels: Vec<String> = browser
        .eval("[...document.querySelectorAll('#report-chart svg text.chart-value')].map(t => t.textContent)")
        .await;
    let zhejiang = got.rows.iter().position(|r| r.key == "330000").unwrap();
    assert!(labels[zhejiang].starts_with("39,500,000.00"), "{labels:?}");

    // The form: Zhejiang, 2019-2020, trademarks.
    browser.choose("#report-region", "330000").await;
    browser.set_value("#report-from", "2019-01-01").await;
    browser.set_value("#report-to", "2020-12-31").await;
    browser.choose("#report-kind", "trademarks").await;
    browser.click("#report-form button[type=submit]").await;
    browser.report_ready("330000", "trademarks").await;
    let request = statistics_request("330000", "2019-01-01", "2020-12-31", &[RightKind::Trademark], "10000000.00");
    let got = check_report(&browser, &mut exposure, request, en).await;
    // Ningbo's trademark and Xihu's patent with a trademark; not the patents alone nor Wenzhou's copyright.
    assert_eq!(got.total.as_ref().unwrap().registered_amount, "1450000.00");
    assert_eq!(got.total.as_ref().unwrap().registrations, 2);
    assert!(browser.text("#report-caption").await.contains("Trademarks"));

    // Patents, at a threshold of 250,000.00, in 万元: the unit changes the display only.
    browser.choose("#report-kind", "patents").await;
    browser.set_value("#report-threshold", "250,000.00").await;
    browser.click("#report-form button[type=submit]").await;
    browser.report_ready("330000", "patents").await;
    browser.choose("#unit", "wan").await;
    // A redraw keeps what the form holds and has not been submitted yet.
    browser.choose("#report-kind", "copyrights").await;
    browser.choose("#lang", "zh-CN").await;
    browser.choose("#lang", "en").await;
    assert_eq!(browser.eval::<String>("document.getElementById('report-kind').value").await, "copyrights");
    browser.choose("#report-kind", "patents").await;
    let request = statistics_request("330000", "2019-01-01", "2020-12-31", &PATENTS, "250000.00");
    let got = check_report(&browser, &mut exposure, request, (4, " %", "Total")).await;
    assert_eq!(got.total.as_ref().unwrap().registrations, 3, "Xihu twice and Binjiang in 2019-2020");
    assert_eq!(browser.headers("report-table").await[9], "Inclusive share (≤ 250,000.00 yuan)");
    assert_eq!(browser.title("#report-table tr.total td.amount").await, "1,700,000.00 yuan");

    // Drill down to Hangzhou from the table; the filter and period stay.
    browser.click("#report-table a[data-key='330100']").await;
    browser.report_ready("330100", "patents").await;
    let request = statistics_request("330100", "2019-01-01", "2020-12-31", &PATENTS, "250000.00");
    check_report(&browser, &mut exposure, request, (4, " %", "Total")).await;
    assert!(
        browser.client.find(Locator::Css("#report-table a[data-key='330106']")).await.is_err(),
        "counties are leaves"
    );

    // In Chinese, with growth over the previous year (2019 → 2020 for copyrights in Zhejiang).
    browser.choose("#unit", "yuan").await;
    browser.choose("#lang", "zh-CN").await;
    browser
        .client
        .goto(&format!(
            "http://{}/dashboard/#/report/330000?from=2020-01-01&to=2020-12-31&kind=all&threshold=10000000.00",
            server.addr
        ))
        .await
        .unwrap();
    browser.report_ready("330000", "all").await;
    let request = statistics_request("330000", "2020-01-01", "2020-12-31", &[], "10000000.00");
    let got = check_report(&browser, &mut exposure, request, (0, "%", "合计")).await;
    assert_eq!(got.total.as_ref().unwrap().amount_growth_percent, "70.67", "1,280,000 over 2019's 750,000");
    let in_2020 = (1, "60000.00".to_owned(), "20000.00".to_owned(), "10000.00".to_owned());
    assert_eq!(flows(got.total.as_ref().unwrap()), in_2020, "Wenzhou's default, claim and first payment");
    assert_eq!(
        browser.headers("report-table").await[8..],
        [
            "同比增长",
            "普惠占比（≤10,000,000.00 元）",
            "违约（笔）",
            "违约金额（元）",
            "风险补偿申请金额（元）",
            "风险补偿已付金额（元）"
        ]
    );
    let request = statistics_request("330000", "2020-01-01", "2020-12-31", &[RightKind::Copyright], "10000000.00");
    browser.choose("#report-kind", "copyrights").await;
    browser.click("#report-form button[type=submit]").await;
    browser.report_ready("330000", "copyrights").await;
    let got = check_report(&browser, &mut exposure, request, (0, "%", "合计")).await;
    assert_eq!(flows(got.total.as_ref().unwrap()), in_2020, "Wenzhou's pledge is a copyright");

    // An office sees its own region and children to choose from, nothing else.
    let office = server.token("zj-office", TokenRole::Office, "", "330000").await;
    browser.sign_in(&server, &office).await;
    browser.ready("330000").await;
    browser.click("#tab-report").await;
    browser.report_ready("330000", "all").await;
    let choices: Vec<String> =
        browser.eval("[...document.querySelectorAll('#report-region option')].map(o => o.value)").await;
    assert_eq!(choices[0], "", "the scope itself");
    assert!(choices[1..].iter().all(|c| c.starts_with("33")) && choices.len() == 12, "{choices:?}");
    let request = statistics_request("", &from, &to, &[], "10000000.00");
    check_report(&browser, &mut server.exposure_as(Bearer::new(&office)).await, request, (0, "%", "合计")).await;
    browser.close().await;
    server.stop().await;
}

/// RFC 4180: fields separated by commas, lines ended by CRLF, quoted fields with doubled quotes.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    field.push('"');
                    chars.next();
                }
                '"' => quoted = false,
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            ',' => row.push(std::mem::take(&mut field)),
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "CRLF line ends");
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            '\n' => panic!("a bare LF: RFC 4180 ends lines with CRLF"),
            _ => field.push(c),
        }
    }
    assert!(field.is_empty() && row.is_empty(), "the last line ends with CRLF");
    rows
}

/// Waits for the download named `name` in `dir`: its bytes.
async fn downloaded_file(dir: &std::path::Path, name: &str) -> Vec<u8> {
    let path = dir.join(name);
    for _ in 0..(WAIT_S_MAX * 10) {
        // Chromium writes into a .crdownload file and renames it when done, but may create the
        // file under its name first: wait for its bytes, with no partial download left.
        let partial =
            std::fs::read_dir(dir).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".crdownload"));
        if path.exists() && !partial {
            let bytes = std::fs::read(&path).unwrap();
            if !bytes.is_empty() {
                return bytes;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let found: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    panic!("no download {name} in {dir:?}: {found:?}");
}

/// Waits for the download named `name` in `dir`, checks its byte-order mark and parses it.
async fn downloaded_csv(dir: &std::path::Path, name: &str) -> (String, Vec<Vec<String>>) {
    let bytes = downloaded_file(dir, name).await;
    assert_eq!(bytes[..3], [0xEF, 0xBB, 0xBF], "{name}: UTF-8 with a BOM, for Excel and WPS");
    let text = String::from_utf8(bytes[3..].to_vec()).unwrap();
    (text.clone(), parse_csv(&text))
}

/// An exposure row as the CSV exports of the region and pledgee tables must give it: the API's
/// own strings.
fn exposure_csv_row(r: &ExposureRow) -> Vec<String> {
    vec![
        r.key.clone(),
        if r.name.is_empty() { r.key.clone() } else { r.name.clone() },
        r.secured_amount.clone(),
        r.pledge_count.to_string(),
        r.enterprise_count.to_string(),
        r.right_count.to_string(),
        r.credit_drawn.clone(),
        r.credit_limit.clone(),
        r.at_risk_amount.clone(),
        r.at_risk_count.to_string(),
        r.defaulted_amount.clone(),
        r.non_performing_percent.clone(),
        r.appraised_value.clone(),
        r.loan_to_value_percent.clone(),
        r.compensation_claimed.clone(),
        r.compensation_paid.clone(),
    ]
}

/// Rows of a table without their header, in key order.
fn by_key(mut rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_exports_csv_with_the_apis_exact_figures() {
    let server = TestServer::start().await;
    let seeded = seed(&server).await;
    seed_risk(&server, &seeded).await;
    let (year, report_pledges) = seed_report(&server).await;
    seed_report_risk(&server, year, &report_pledges).await;
    // A bank whose name needs quoting in CSV.
    let bank_c = credit_code(unique());
    let mut quoted = pledge("330108", "1234.56");
    quoted.pledgee = Some(party("Bank \"C\", Hangzhou", &bank_c));
    server.pledges().await.register_pledge(register(quoted)).await.unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let browser = Browser::launch(&[], "zh-CN,zh", Some(downloads.path())).await;
    browser.sign_in(&server, &server.admin_token).await;
    browser.ready("").await;
    // Displayed in 亿元, exported in exact yuan.
    browser.choose("#unit", "yi").await;
    let today = chrono::Local::now().date_naive();
    let mut exposure = server.exposure().await;
    let api = |group_by: ExposureGroupBy| GetExposureRequest { group_by: group_by as i32, ..Default::default() };

    browser.click("button[data-export='regions']").await;
    let (_, csv) = downloaded_csv(downloads.path(), &format!("exposure-regions-all-{today}.csv")).await;
    assert_eq!(
        csv[0][..8],
        [
            "地区代码",
            "地区",
            "被担保债权数额（元）",
            "质押登记（笔）",
            "出质企业（家）",
            "质押知识产权（件）",
            "授信已用（元）",
            "授信额度（元）"
        ]
    );
    assert_eq!(csv[0][11], "不良率（%）");
    let provinces = exposure.get_exposure(api(ExposureGroupBy::ChildRegion)).await.unwrap().into_inner();
    assert_eq!(by_key(csv[1..].to_vec()), by_key(provinces.rows.iter().map(exposure_csv_row).collect()));
    assert!(csv.iter().any(|r| r[0] == "330000" && r[2] == "41543580.23"), "exact yuan, not 亿元");

    browser.click("button[data-export='pledgees']").await;
    let (raw, csv) = downloaded_csv(downloads.path(), &format!("exposure-pledgees-all-{today}.csv")).await;
    assert_eq!(csv[0][..2], ["统一社会信用代码", "质权人"]);
    let pledgees = exposure.get_exposure(api(ExposureGroupBy::Pledgee)).await.unwrap().into_inner();
    assert_eq!(by_key(csv[1..].to_vec()), by_key(pledgees.rows.iter().map(exposure_csv_row).collect()));
    let name = &pledgees.rows.iter().find(|r| r.key == bank_c).unwrap().name;
    assert!(name.contains(',') && raw.contains(&format!("\"{}\"", name.replace('"', "\"\""))), "{name} quoted");

    browser.click("button[data-export='trend']").await;
    let (_, csv) = downloaded_csv(downloads.path(), &format!("exposure-trend-all-{today}.csv")).await;
    assert_eq!(csv[0], ["截至", "被担保债权数额（元）", "质押登记（笔）", "出质企业（家）"]);
    assert_eq!(csv.len(), 11);
    for row in &csv[1..] {
        let request = GetExposureRequest { as_of: row[0].clone(), ..Default::default() };
        let total = exposure.get_exposure(request).await.unwrap().into_inner().total.unwrap();
        let expected = [total.secured_amount, total.pledge_count.to_string(), total.enterprise_count.to_string()];
        assert_eq!(row[1..], expected, "as of {}", row[0]);
    }

    // The report: Zhejiang, 2019-2020, patents, threshold 250,000.00.
    let hash = "#/report/330000?from=2019-01-01&to=2020-12-31&kind=patents&threshold=250000.00";
    browser.client.goto(&format!("http://{}/dashboard/{hash}", server.addr)).await.unwrap();
    browser.report_ready("330000", "patents").await;
    browser.click("#report button[data-export='report']").await;
    let (_, csv) = downloaded_csv(downloads.path(), "statistics-330000-2019-01-01-2020-12-31-patents.csv").await;
    assert_eq!(
        csv[0],
        [
            "地区代码",
            "地区",
            "担保债权数额（元）",
            "质押登记（笔）",
            "出质企业（家）",
            "涉及专利（件）",
            "涉及商标（件）",
            "涉及著作权（件）",
            "普惠质押登记（笔）",
            "普惠占比（%，担保债权数额≤250000.00 元）",
            "上年同期担保债权数额（元）",
            "上年同期质押登记（笔）",
            "同比增长（%）",
            "违约（笔）",
            "违约金额（元）",
            "风险补偿申请金额（元）",
            "风险补偿已付金额（元）"
        ]
    );
    let request = statistics_request("330000", "2019-01-01", "2020-12-31", &PATENTS, "250000.00");
    let got = exposure.get_statistics(request).await.unwrap().into_inner();
    let line = |key: &str, name: &str, r: &StatisticsRow| {
        vec![
            key.to_owned(),
            name.to_owned(),
            r.registered_amount.clone(),
            r.registrations.to_string(),
            r.enterprises.to_string(),
            r.patents.to_string(),
            r.trademarks.to_string(),
            r.copyrights.to_string(),
            r.inclusive_registrations.to_string(),
            r.inclusive_share_percent.clone(),
            r.previous_registered_amount.clone(),
            r.previous_registrations.to_string(),
            r.amount_growth_percent.clone(),
            r.defaults.to_string(),
            r.defaulted_amount.clone(),
            r.compensation_claimed.clone(),
            r.compensation_paid.clone(),
        ]
    };
    let mut expected: Vec<Vec<String>> = got.rows.iter().map(|r| line(&r.key, &r.name, r)).collect();
    expected.push(line("330000", "合计", got.total.as_ref().unwrap()));
    assert_eq!(csv[1..], expected);
    assert!(csv.iter().any(|r| r[0] == "330100" && r[2] == "1701234.56" && r[9] == "50.00"), "{csv:?}");

    // This year's report, every right: the risk side's flows in exact yuan, shown in 亿元.
    let (from, to) = (format!("{year}-01-01"), format!("{year}-12-31"));
    let hash = format!("#/report/330000?from={from}&to={to}&kind=all&threshold=10000000.00");
    browser.client.goto(&format!("http://{}/dashboard/{hash}", server.addr)).await.unwrap();
    browser.report_ready("330000", "all").await;
    browser.click("#report button[data-export='report']").await;
    let (_, csv) = downloaded_csv(downloads.path(), &format!("statistics-330000-{from}-{to}-all.csv")).await;
    let request = statistics_request("330000", &from, &to, &[], "10000000.00");
    let got = exposure.get_statistics(request).await.unwrap().into_inner();
    let mut expected: Vec<Vec<String>> = got.rows.iter().map(|r| line(&r.key, &r.name, r)).collect();
    expected.push(line("330000", "合计", got.total.as_ref().unwrap()));
    assert_eq!(csv[1..], expected);
    let ningbo = csv.iter().find(|r| r[0] == "330200").unwrap();
    assert_eq!(ningbo[13..], ["1", "12345.67", "5000.00", "4321.09"], "Ningbo's default, claim and payment");
    let wenzhou = csv.iter().find(|r| r[0] == "330300").unwrap();
    assert_eq!(wenzhou[13..], ["0", "0.00", "0.00", "5000.00"], "a payment this year on a claim of 2020");
    browser.close().await;
    server.stop().await;
}

/// OWASP's CSV injection: a text cell beginning with `=`, `+`, `-`, `@`, a tab or a carriage
/// return is a formula to Excel and WPS; the export prefixes it with `'` and quotes it. Figures,
/// negative ones included, stay plain numbers that a spreadsheet can add up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_csv_neutralises_formulas_and_keeps_numbers_numbers() {
    let server = TestServer::start().await;
    let formula = "=HYPERLINK(\"http://x\",\"y\")";
    let bank = credit_code(unique());
    let mut hostile = pledge("330108", "1234.56");
    hostile.pledgee = Some(party(formula, &bank));
    server.pledges().await.register_pledge(register(hostile)).await.unwrap();
    let downloads = tempfile::tempdir().unwrap();
    let browser = Browser::launch(&[], "en-US,en", Some(downloads.path())).await;
    browser.sign_in(&server, &server.admin_token).await;
    browser.ready("").await;
    let today = chrono::Local::now().date_naive();
    browser.click("button[data-export='pledgees']").await;
    let (raw, csv) = downloaded_csv(downloads.path(), &format!("exposure-pledgees-all-{today}.csv")).await;
    let row = csv.iter().find(|r| r[0] == bank).unwrap_or_else(|| panic!("no row of {bank}: {csv:?}"));
    assert_eq!(row[1], format!("'{formula}"), "the name is text, not a formula: {raw}");
    assert!(raw.contains("\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\""), "quoted as OWASP advises: {raw}");
    assert_eq!(row[2], "1234.56", "the amount stays a number");
    assert_eq!(row[3], "1", "the count stays a number");
    // Every cell the exports write goes through one function: each formula start is neutralised,
    // numbers (negative growth, for one) are not.
    let cells: Vec<String> =
        browser.eval("['-1.00', '-12.5', '0', '+1', '-1+1', '@SUM(A1)', '\\tx', '\\rx', 'Bank A'].map(csvField)").await;
    let expected = ["-1.00", "-12.5", "0", "\"'+1\"", "\"'-1+1\"", "\"'@SUM(A1)\"", "\"'\tx\"", "\"'\rx\"", "Bank A"];
    assert_eq!(cells, expected);
    browser.close().await;
    server.stop().await;
}

/// A Chrome DevTools Protocol command through chromedriver (`goog/cdp/execute`), for what
/// WebDriver has no command of its own: the print media, here.
#[derive(Debug)]
struct Cdp {
    command: &'static str,
    params: serde_json::Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for Cdp {
    fn endpoint(&self, base_url: &url::Url, session_id: Option<&str>) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/goog/cdp/execute", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        let body = serde_json::json!({"cmd": self.command, "params": self.params});
        (axum::http::Method::POST, Some(body.to_string()))
    }
}

/// The dark modules of the certificate's QR code, from its SVG path (`M{x} {y}h1v1h-1z` per dark
/// module, after a quiet zone of 4 modules), as rows of `modules` modules.
fn qr_matrix(path: &str, modules: usize) -> Vec<Vec<bool>> {
    let mut matrix = vec![vec![false; modules]; modules];
    for module in path.split('M').filter(|m| !m.is_empty()) {
        let (x, y) = module.strip_suffix("h1v1h-1z").and_then(|xy| xy.split_once(' ')).expect(module);
        let (x, y): (usize, usize) = (x.parse().unwrap(), y.parse().unwrap());
        matrix[y - 4][x - 4] = true;
    }
    matrix
}

/// Decodes a QR code from its modules, drawn as an image (4 pixels a module, in its quiet zone):
/// its content and its error correction level (as the format information codes it: M is 0).
fn qr_decode(matrix: &[Vec<bool>]) -> (String, u16) {
    const SCALE: usize = 4;
    let side = (matrix.len() + 8) * SCALE;
    let mut image = rqrr::PreparedImage::prepare_from_greyscale(side, side, |x, y| {
        let (col, row) = ((x / SCALE).wrapping_sub(4), (y / SCALE).wrapping_sub(4));
        if matrix.get(row).and_then(|r| r.get(col)).copied().unwrap_or(false) { 0 } else { 255 }
    });
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code");
    let (meta, content) = grids[0].decode().unwrap();
    (content, meta.ecc_level)
}

/// A field of the certificate sheet (or of the pledge view): the text of its value cell.
async fn field(browser: &Browser, view: &str, name: &str) -> String {
    browser.text(&format!("#{view} tr[data-field='{name}'] td")).await
}

/// A pledge with a patent and a trademark, its amount then lowered, and another one released.
async fn seed_certificates(server: &TestServer) -> (Pledge, Pledge) {
    let mut pledges = server.pledges().await;
    let mut p = pledge("330106", "3000000.00");
    p.rights.push(Right {
        kind: RightKind::Trademark as i32,
        number: format!("{}", 10_000_000 + unique()),
        title: "云杉".into(),
        ..Default::default()
    });
    let registered = pledges.register_pledge(register(p)).await.unwrap().into_inner();
    let change = ChangePledgeRequest {
        request_id: request_id(),
        id: registered.id.clone(),
        secured_amount: "2500000.00".into(),
        debt_term_end: String::new(),
        reason: "partial repayment".into(),
        effective_on: "2020-01-01".into(),
    };
    let changed = pledges.change_pledge(change).await.unwrap().into_inner();
    let other = pledges.register_pledge(register(pledge("330108", "100000.00"))).await.unwrap().into_inner();
    let released = pledges.release_pledge(release(other.id, "2021-06-01")).await.unwrap().into_inner();
    (changed, released)
}

/// The certificate's verifiable record shows `certificate`'s tree size, root, signing time in China
/// time, key, entries, digest and witnesses; its QR code, decoded, is exactly the digest, at error
/// correction M.
async fn check_proof(browser: &Browser, certificate: &serde_json::Value) {
    let head = &certificate["treeHead"];
    let digest = certificate["digest"].as_str().unwrap();
    assert_eq!(digest.len(), 64, "{certificate}");
    assert_eq!(field(browser, "certificate", "digest").await, digest);
    assert_eq!(field(browser, "certificate", "treeSize").await, head["treeSize"].as_str().unwrap());
    assert_eq!(field(browser, "certificate", "rootHash").await, head["rootHash"].as_str().unwrap());
    assert_eq!(field(browser, "certificate", "publicKey").await, head["publicKey"].as_str().unwrap());
    let signed = chrono::DateTime::parse_from_rfc3339(head["time"].as_str().unwrap()).unwrap();
    let china = signed.with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).unwrap());
    assert_eq!(
        field(browser, "certificate", "signedAt").await,
        china.format("%Y-%m-%d %H:%M:%S（北京时间）").to_string()
    );
    let entries: Vec<String> = certificate["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let event = match e["event"].as_str().unwrap() {
                "PLEDGE_REGISTERED" => "登记",
                "PLEDGE_CHANGED" => "变更",
                _ => "注销",
            };
            format!("{}（{event}）", e["sequence"].as_str().unwrap())
        })
        .collect();
    assert_eq!(field(browser, "certificate", "entrySequences").await, entries.join("、"));
    let cosignatures = head["cosignatures"].as_array().map_or(0, Vec::len);
    assert_eq!(field(browser, "certificate", "cosignatures").await, cosignatures.to_string());
    let (content, modules, path): (String, String, String) = browser
        .eval(
            "(q => [q.dataset.content, q.dataset.modules, q.querySelector('path').getAttribute('d')])\
             (document.querySelector('#certificate svg.qr'))",
        )
        .await;
    assert_eq!(content, digest, "the page's own record of what it encoded");
    let modules: usize = modules.parse().unwrap();
    assert_eq!(qr_decode(&qr_matrix(&path, modules)), (digest.to_owned(), 0), "the digest, at error correction M");
}

/// The certificate's particulars, as a registration notice gives them, of `changed` (seeded by
/// `seed_certificates`).
async fn check_particulars(browser: &Browser, changed: &Pledge) {
    let pledgor = changed.pledgor.clone().unwrap();
    assert_eq!(browser.text("#certificate .certificate-title").await, "知识产权质押登记证书");
    let fields = browser.headers_of("#certificate table.particulars").await;
    assert_eq!(fields, ["登记编号", "出质人", "质权人", "主债权数额", "债务履行期限", "登记日期", "状态"]);
    assert_eq!(field(browser, "certificate", "registrationNumber").await, changed.registration_number);
    let party = |field: &str, part: &str| format!("#certificate tr[data-field='{field}'] .party-{part}");
    assert_eq!(browser.text(&party("pledgor", "name")).await, pledgor.name);
    assert_eq!(browser.text(&party("pledgor", "code")).await, format!("统一社会信用代码：{}", pledgor.credit_code));
    assert_eq!(browser.text(&party("pledgee", "name")).await, "Bank A");
    assert_eq!(browser.text(&party("pledgee", "code")).await, format!("统一社会信用代码：{BANK_A}"));
    assert_eq!(field(browser, "certificate", "principalAmount").await, "250 万元（2,500,000.00 元）");
    assert_eq!(field(browser, "certificate", "debtTerm").await, "2019年6月1日 至 2022年5月31日");
    assert_eq!(field(browser, "certificate", "registeredOn").await, "2019年6月5日");
    assert_eq!(field(browser, "certificate", "status").await, "有效");
    let rights = browser.rows("certificate-rights").await;
    let rights: Vec<Vec<String>> = rights.into_iter().map(|(_, cells)| cells).collect();
    let trademark = &changed.rights[1].number;
    assert_eq!(
        rights,
        [["1", "专利（发明）", &changed.rights[0].number, "A method"], ["2", "商标", trademark, "云杉"]]
    );
    let changes = browser.rows("certificate-changes").await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].1, ["2020年1月1日", "300 万元（3,000,000.00 元） → 250 万元（2,500,000.00 元）", "未变更"]);
}

/// The certificate's verifiable record and its download. The download is the answer the page drew
/// (the JSON API's own text) and shows; it is the certificate that GetPledgeCertificate, called
/// directly through the JSON API, answers (signed again: only the head's time and signature
/// differ), the same digest; and `ipledger certificate verify` accepts it with the server's key.
async fn check_record(browser: &Browser, admin_token: &str, downloads: &std::path::Path, changed: &Pledge) {
    browser.click("#certificate-download").await;
    let name = format!("pledge-{}.certificate.json", changed.registration_number);
    let drawn: serde_json::Value = serde_json::from_slice(&downloaded_file(downloads, &name).await).unwrap();
    assert_eq!(drawn["registrationNumber"], changed.registration_number.as_str());
    check_proof(browser, &drawn).await;

    let admin = format!("Bearer {admin_token}");
    let method = "/api/ipledger.v1.PledgeService/GetPledgeCertificate";
    let (status, direct) =
        browser.fetch(method, Some(&admin), &serde_json::json!({"id": changed.id}).to_string()).await;
    assert_eq!(status, 200, "{direct}");
    let unsigned = |mut certificate: serde_json::Value| {
        let head = certificate["treeHead"].as_object_mut().unwrap();
        head.remove("time");
        head.remove("signature");
        certificate
    };
    assert_eq!(unsigned(drawn.clone()), unsigned(direct.clone()));
    assert_eq!(field(browser, "certificate", "digest").await, direct["digest"].as_str().unwrap());

    let key = drawn["treeHead"]["publicKey"].as_str().unwrap();
    let file = downloads.join(&name);
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_ipledger"))
        .args(["certificate", "verify", file.to_str().unwrap(), "--key", key])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{printed}{}", String::from_utf8_lossy(&verify.stderr));
    assert!(printed.contains(&format!("digest {}", direct["digest"].as_str().unwrap())), "{printed}");
}

/// The pledges' tab and the printable certificate: a lookup by a right's number lists the pledge,
/// the pledge's view opens its certificate, laid out as a registration notice in Chinese (the
/// registration number, the parties with their credit codes, the rights by kind, the amount in 万元
/// and yuan, the term, the date, the status, the change) with the verifiable record of
/// GetPledgeCertificate and its QR code; the download is the API's answer and `ipledger certificate
/// verify` accepts it; printed, only the sheet
/// shows, on A4 portrait, one page. A released pledge's certificate says 已注销; English labels too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_prints_a_pledge_certificate_with_a_verifiable_record() {
    let server = TestServer::start().await;
    let (changed, released) = seed_certificates(&server).await;
    let downloads = tempfile::tempdir().unwrap();
    let browser = Browser::launch(&[], "zh-CN,zh", Some(downloads.path())).await;
    browser.sign_in(&server, &server.admin_token).await;
    browser.ready("").await;

    // The lookup, by the patent's number.
    browser.click("#tab-pledges").await;
    browser.pledge_ready("pledges", "").await;
    assert_eq!(browser.rows("pledge-list").await.len(), 2, "every pledge in the scope");
    browser.set_value("#pledge-query", &changed.rights[0].number).await;
    browser.click("#pledge-search button[type=submit]").await;
    browser.shows("body[data-state='ready'] #pledge-list tbody tr:only-child").await;
    let rows = browser.rows("pledge-list").await;
    assert_eq!(rows[0].0, changed.id);
    let pledgor = changed.pledgor.clone().unwrap();
    let expected =
        [&changed.registration_number, &pledgor.name, "Bank A", "2,500,000.00", "2019年6月5日", "有效", "证书"];
    assert_eq!(rows[0].1, expected);
    browser.click(&format!("#pledge-list tr[data-key='{}'] td.name a", changed.id)).await;
    browser.pledge_ready("pledge", &changed.id).await;
    assert_eq!(field(&browser, "pledge", "principalAmount").await, "250 万元（2,500,000.00 元）");
    browser.click("#pledge-certificate").await;
    browser.pledge_ready("certificate", &changed.id).await;

    check_particulars(&browser, &changed).await;

    check_record(&browser, &server.admin_token, downloads.path(), &changed).await;
    assert_eq!(
        browser.text("#certificate .verify code").await,
        "ipledger certificate verify 证书.json --key signing-key.pub"
    );
    check_print(&browser).await;

    // A released pledge, from the lookup's certificate action.
    browser.click("#tab-pledges").await;
    browser.pledge_ready("pledges", "").await;
    assert_eq!(browser.eval::<String>("location.hash").await, format!("#/pledges?q={}", changed.rights[0].number));
    browser.set_value("#pledge-query", &released.pledgor.as_ref().unwrap().credit_code).await;
    browser.click("#pledge-search button[type=submit]").await;
    browser.shows(&format!("body[data-state='ready'] #pledge-list tr[data-key='{}']:only-child", released.id)).await;
    browser.click(&format!("#pledge-list tr[data-key='{}'] a.certificate-action", released.id)).await;
    browser.pledge_ready("certificate", &released.id).await;
    assert_eq!(field(&browser, "certificate", "status").await, "已注销（2021年6月1日，债务已清偿）");
    assert!(field(&browser, "certificate", "entrySequences").await.ends_with("（注销）"));
    assert_eq!(field(&browser, "certificate", "principalAmount").await, "10 万元（100,000.00 元）");

    // In English.
    browser.choose("#lang", "en").await;
    assert_eq!(browser.text("#certificate .certificate-title").await, "IP Pledge Registration Certificate");
    assert_eq!(field(&browser, "certificate", "principalAmount").await, "10 × 10,000 yuan (100,000.00 yuan)");
    assert!(field(&browser, "certificate", "signedAt").await.ends_with(" (China time, UTC+8)"));
    assert_eq!(browser.text("#certificate-download").await, "Download certificate JSON");
    browser.close().await;
    server.stop().await;
}

/// Printed, the certificate is the sheet alone (no header, tabs, toolbar or footer) on the named
/// page `certificate`, A4 portrait, and fits one page.
async fn check_print(browser: &Browser) {
    let media = Cdp { command: "Emulation.setEmulatedMedia", params: serde_json::json!({"media": "print"}) };
    browser.client.issue_cmd(media).await.unwrap();
    let shown: Vec<(String, String)> = browser
        .eval(
            "['header', '#views', '#certificate .toolbar', 'footer', '#certificate-sheet', '#certificate .proof']\
             .map(s => [s, getComputedStyle(document.querySelector(s)).display])",
        )
        .await;
    let hidden: Vec<&str> = shown.iter().filter(|(_, d)| d == "none").map(|(s, _)| s.as_str()).collect();
    assert_eq!(hidden, ["header", "#views", "#certificate .toolbar", "footer"], "{shown:?}");
    let page: String = browser.eval("getComputedStyle(document.body).page").await;
    assert_eq!(page, "certificate");
    let size: String = browser
        .eval(
            "[...document.styleSheets].flatMap(s => [...s.cssRules])\
             .find(r => r instanceof CSSPageRule && r.selectorText === 'certificate').style.size",
        )
        .await;
    // Chromium writes `A4 portrait` as `a4`, portrait being A4's own orientation.
    assert!(matches!(size.to_lowercase().as_str(), "a4" | "a4 portrait"), "{size}");
    let plain = Cdp { command: "Emulation.setEmulatedMedia", params: serde_json::json!({"media": ""}) };
    browser.client.issue_cmd(plain).await.unwrap();
    let a4 = fantoccini::wd::PrintConfiguration::builder().size(fantoccini::wd::PrintSize::A4).build().unwrap();
    let pdf = browser.client.print(a4).await.unwrap();
    let text = String::from_utf8_lossy(&pdf);
    let pages = text.matches("/Type /Page").count() - text.matches("/Type /Pages").count();
    assert_eq!(pages, 1, "the certificate fits one sheet of A4");
}
