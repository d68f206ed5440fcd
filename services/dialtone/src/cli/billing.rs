//! `dialtone billing …`: rate tables (publish, list), re-rating a period under other prices
//! (changing no history), and reconciliation of usage with the per-call charges derived from
//! the events.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use dialtone_events::envelope::{format_time, parse_time};
use dialtone_events::payload::{RatePrice, RatePublished};
use dialtone_events::sid::{AccountSid, RateSid};
use dialtone_events::{ExpectedVersion, NewEvent};
use dialtone_projections::billing::balance::PHONE_NUMBERS;
use dialtone_projections::billing::{
    format_micros, list_legs, load_published, parse_currency, rate_price, rerate_leg, usage_rows,
    BillingLeg, RateTable, UsageRow, LEG_BILLED,
};
use dialtone_projections::replay::{billing_as_of, Until};
use serde::Deserialize;
use serde_json::json;
use time::{Date, OffsetDateTime};

use super::source::LogArgs;

/// A rate table file (TOML, or JSON when the name ends in `.json`):
///
/// ```toml
/// currency = "USD"
/// effective_from = "2027-01-01T00:00:00Z"   # publish only; default: now
/// [[prices]]
/// category = "calls-outbound"
/// per_minute = "0.0140"
/// [[prices]]
/// category = "calls-outbound"
/// prefix = "+44"
/// per_minute = "0.0500"
/// ```
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateFile {
    currency: String,
    #[serde(default)]
    effective_from: Option<String>,
    prices: Vec<PriceEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceEntry {
    category: String,
    #[serde(default)]
    prefix: Option<String>,
    /// An exact decimal string: prices are never floats.
    per_minute: String,
}

struct Rates {
    currency: String,
    effective_from: Option<OffsetDateTime>,
    prices: Vec<RatePrice>,
}

fn read_rate_file(path: &Path) -> anyhow::Result<Rates> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file: RateFile = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
    } else {
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?
    };
    let currency = parse_currency(&file.currency).map_err(anyhow::Error::msg)?;
    let effective_from = file
        .effective_from
        .as_deref()
        .map(|v| {
            parse_time(v).with_context(|| format!("effective_from {v:?} is not an RFC 3339 time"))
        })
        .transpose()?;
    let prices = file
        .prices
        .iter()
        .enumerate()
        .map(|(i, p)| {
            rate_price(&p.category, p.prefix.as_deref(), &p.per_minute)
                .map_err(|e| anyhow::anyhow!("{}: price {}: {e}", path.display(), i + 1))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(!prices.is_empty(), "{} lists no prices", path.display());
    Ok(Rates {
        currency,
        effective_from,
        prices,
    })
}

#[derive(Debug, clap::Subcommand)]
pub enum BillingCommand {
    /// Rate tables: effective-dated per-minute prices.
    #[command(subcommand)]
    Rates(RatesCommand),
    /// What a period would cost under other prices, per account and category, and the
    /// difference. Changes nothing.
    Rerate(RerateArgs),
    /// Proves that usage equals the sum of the per-call charges derived from the events, to
    /// the micro-unit. Exits 1 naming the first call (or usage row) that differs.
    Reconcile(ReconcileArgs),
    /// Record a payment or credit for an account (its balance goes up by AMOUNT).
    Credit(super::balance::CreditArgs),
    /// How an account pays: --prepaid, or --postpaid [--credit-limit AMOUNT].
    Plan(super::balance::PlanArgs),
}

#[derive(Debug, clap::Subcommand)]
pub enum RatesCommand {
    /// Publish a rate table file (operator-wide, or for one account).
    Publish {
        #[arg(long)]
        file: PathBuf,
        /// Only for this account (default: every account without a table of its own).
        #[arg(long)]
        account: Option<String>,
        /// Overrides the file's `effective_from`.
        #[arg(long)]
        effective_from: Option<String>,
        #[command(flatten)]
        log: LogArgs,
    },
    /// The published tables, from the read models.
    List {
        #[command(flatten)]
        log: LogArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct RerateArgs {
    /// The alternative prices (a rate table file).
    #[arg(long)]
    rates: PathBuf,
    /// Legs answered at or after this time (RFC 3339).
    #[arg(long)]
    from: String,
    /// Legs answered before this time (RFC 3339).
    #[arg(long)]
    to: String,
    #[arg(long)]
    account: Option<String>,
    /// JSON instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Debug, clap::Args)]
pub struct ReconcileArgs {
    #[arg(long)]
    account: Option<String>,
    #[command(flatten)]
    log: LogArgs,
}

pub async fn run(command: BillingCommand) -> anyhow::Result<ExitCode> {
    match command {
        BillingCommand::Rates(RatesCommand::Publish {
            file,
            account,
            effective_from,
            log,
        }) => publish(&file, account, effective_from, &log).await,
        BillingCommand::Rates(RatesCommand::List { log }) => list(&log).await,
        BillingCommand::Rerate(args) => rerate(args).await,
        BillingCommand::Reconcile(args) => reconcile(args).await,
        BillingCommand::Credit(args) => super::balance::credit(args).await,
        BillingCommand::Plan(args) => super::balance::plan(args).await,
    }
}

async fn publish(
    file: &Path,
    account: Option<String>,
    effective_from: Option<String>,
    args: &LogArgs,
) -> anyhow::Result<ExitCode> {
    let rates = read_rate_file(file)?;
    if let Some(account) = &account {
        AccountSid::parse(account).map_err(anyhow::Error::msg)?;
    }
    let effective_from = match effective_from {
        Some(v) => parse_time(&v)
            .with_context(|| format!("--effective-from {v:?} is not an RFC 3339 time"))?,
        None => rates.effective_from.unwrap_or_else(OffsetDateTime::now_utc),
    };
    let source = args.open().await?;
    let sid = RateSid::generate();
    let appended = source
        .log
        .append(
            sid.as_str(),
            ExpectedVersion::NoStream,
            vec![NewEvent::new(
                account.clone().unwrap_or_default(),
                RatePublished {
                    effective_from,
                    currency: rates.currency.clone(),
                    prices: rates.prices.clone(),
                },
            )],
        )
        .await?;
    println!(
        "{}",
        json!({
            "sid": sid.as_str(),
            "account_sid": account,
            "effective_from": format_time(effective_from),
            "currency": rates.currency,
            "prices": rates.prices.len(),
            "position": source.log.position_token(&{
                let mut c = dialtone_events::Cursor::start();
                for p in &appended.positions { c.advance(p); }
                c
            }),
        })
    );
    Ok(ExitCode::SUCCESS)
}

async fn list(args: &LogArgs) -> anyhow::Result<ExitCode> {
    let source = args.open().await?;
    let read_models = source
        .read_models()
        .context("no read models here yet: start `serve` once, or run `dialtone rebuild`")?;
    for table in read_models.read(load_published).await? {
        let scope = if table.account_sid.is_empty() {
            "operator".to_owned()
        } else {
            table.account_sid.clone()
        };
        println!(
            "{} v{}  {scope}  from {}  {}",
            table.rate_sid,
            table.sequence,
            format_time(table.effective_from),
            table.table.currency
        );
        for price in table.table.to_prices() {
            println!(
                "    {:<16} {:<8} {}",
                price.category,
                price.prefix.as_deref().unwrap_or("*"),
                format_micros(price.per_minute_micros, 6)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Usage totals per account, category, day and currency: calls, minutes, micro-units.
type UsageSums = BTreeMap<(String, String, Date, String), (u64, u64, i64)>;

/// Per account, category and currency: legs, minutes, charged, rerated.
type Totals = BTreeMap<(String, String, String), (u64, u64, i64, i64)>;

async fn rerate(args: RerateArgs) -> anyhow::Result<ExitCode> {
    let alternative = read_rate_file(&args.rates)?;
    let alternative = RateTable::from_prices(&alternative.currency, &alternative.prices);
    let from = parse_time(&args.from)
        .with_context(|| format!("--from {:?} is not an RFC 3339 time", args.from))?;
    let to = parse_time(&args.to)
        .with_context(|| format!("--to {:?} is not an RFC 3339 time", args.to))?;
    anyhow::ensure!(from < to, "--from must be before --to");
    let source = args.log.open().await?;
    let config = source.config.rate_table()?;
    let replay = billing_as_of(
        source.log.as_ref(),
        &config,
        args.account.as_deref(),
        &Until::Now,
        |_| {},
    )
    .await?;
    let legs = list_legs(replay.connection(), args.account.as_deref())?;
    let mut totals: Totals = BTreeMap::new();
    for leg in &legs {
        let (Some(charge), Some(answered_at)) = (&leg.charge, leg.answered_at) else {
            continue;
        };
        if leg.state != LEG_BILLED || answered_at < from || answered_at >= to {
            continue;
        }
        let rerated = rerate_leg(charge, leg.destination.as_deref(), &alternative);
        let entry = totals
            .entry((
                leg.account_sid.clone(),
                charge.category.clone(),
                charge.currency.clone(),
            ))
            .or_default();
        entry.0 += 1;
        entry.1 += charge.minutes;
        entry.2 += charge.price_micros;
        entry.3 += rerated.price_micros;
    }
    if args.json {
        let rows: Vec<_> = totals
            .iter()
            .map(
                |((account, category, currency), (legs, minutes, charged, rerated))| {
                    json!({
                        "account_sid": account, "category": category, "currency": currency,
                        "legs": legs, "minutes": minutes,
                        "charged_micros": charged, "rerated_micros": rerated,
                        "difference_micros": rerated - charged,
                    })
                },
            )
            .collect();
        println!(
            "{}",
            json!({ "from": args.from, "to": args.to, "rows": rows })
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<34} {:<15} {:>5} {:>8} {:>16} {:>16} {:>16}  currency",
        "account", "category", "legs", "minutes", "charged", "rerated", "difference"
    );
    for ((account, category, currency), (legs, minutes, charged, rerated)) in &totals {
        println!(
            "{account:<34} {category:<15} {legs:>5} {minutes:>8} {:>16} {:>16} {:>16}  {currency}",
            format_micros(*charged, 6),
            format_micros(*rerated, 6),
            format_micros(rerated - charged, 6)
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn describe_leg(leg: Option<&BillingLeg>) -> String {
    match leg {
        None => "absent".to_owned(),
        Some(leg) => match &leg.charge {
            Some(c) => format!(
                "{} {} min at {} = {} {} (day {})",
                leg.state,
                c.minutes,
                format_micros(c.per_minute_micros, 6),
                format_micros(c.price_micros, 6),
                c.currency,
                leg.usage_day.map(|d| d.to_string()).unwrap_or_default()
            ),
            None => leg.state.to_owned(),
        },
    }
}

async fn reconcile(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let source = args.log.open().await?;
    let read_models = source
        .read_models()
        .context("no read models here yet: start `serve` once, or run `dialtone rebuild`")?;
    let config = source.config.rate_table()?;
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    let replay = billing_as_of(
        source.log.as_ref(),
        &config,
        args.account.as_deref(),
        &Until::Now,
        |n| bar.set_position(n),
    )
    .await?;
    bar.finish_and_clear();
    let derived = list_legs(replay.connection(), args.account.as_deref())?;
    let account = args.account.clone();
    let (stored, usage): (Vec<BillingLeg>, Vec<UsageRow>) = read_models
        .read(move |c| {
            let legs = list_legs(c, account.as_deref())?;
            let accounts: Vec<String> = match &account {
                Some(a) => vec![a.clone()],
                None => {
                    let mut stmt = c
                        .prepare(
                            "SELECT DISTINCT account_sid FROM usage_daily ORDER BY account_sid",
                        )
                        .map_err(|source| dialtone_projections::ProjectionError::Sqlite {
                            context: "listing accounts",
                            source,
                        })?;
                    let rows = stmt
                        .query_map([], |r| r.get(0))
                        .and_then(|r| r.collect::<Result<Vec<String>, _>>())
                        .map_err(|source| dialtone_projections::ProjectionError::Sqlite {
                            context: "listing accounts",
                            source,
                        })?;
                    rows
                }
            };
            let mut usage = Vec::new();
            for a in accounts {
                usage.extend(usage_rows(c, &a, Date::MIN, Date::MAX)?);
            }
            Ok((legs, usage))
        })
        .await?;

    // 1. Every call's charge in the read model is the one its events give.
    let stored_by_sid: BTreeMap<&str, &BillingLeg> =
        stored.iter().map(|l| (l.call_sid.as_str(), l)).collect();
    let derived_by_sid: BTreeMap<&str, &BillingLeg> =
        derived.iter().map(|l| (l.call_sid.as_str(), l)).collect();
    let sids: std::collections::BTreeSet<&str> = stored_by_sid
        .keys()
        .chain(derived_by_sid.keys())
        .copied()
        .collect();
    for sid in &sids {
        let (have, want) = (
            stored_by_sid.get(sid).copied(),
            derived_by_sid.get(sid).copied(),
        );
        let same = match (have, want) {
            (Some(h), Some(w)) => {
                h.state == w.state && h.charge == w.charge && h.usage_day == w.usage_day
            }
            _ => false,
        };
        if !same {
            println!(
                "differs: call {sid}: the read model has {}, its events give {}",
                describe_leg(have),
                describe_leg(want)
            );
            return Ok(ExitCode::from(1));
        }
    }
    // 2. Usage is exactly the sum of those charges, per account, category, day, currency.
    let mut sums: UsageSums = BTreeMap::new();
    for leg in derived.iter().filter(|l| l.state == LEG_BILLED) {
        if let (Some(c), Some(day)) = (&leg.charge, leg.usage_day) {
            let entry = sums
                .entry((
                    leg.account_sid.clone(),
                    c.category.clone(),
                    day,
                    c.currency.clone(),
                ))
                .or_default();
            entry.0 += 1;
            entry.1 += c.minutes;
            entry.2 += c.price_micros;
        }
    }
    // Number rentals are not calls: the replay's own rental usage is what they must equal.
    let mut replayed_accounts: std::collections::BTreeSet<&str> =
        derived.iter().map(|l| l.account_sid.as_str()).collect();
    replayed_accounts.extend(usage.iter().map(|u| u.account_sid.as_str()));
    for account in replayed_accounts {
        for row in usage_rows(replay.connection(), account, Date::MIN, Date::MAX)?
            .into_iter()
            .filter(|r| r.category == PHONE_NUMBERS)
        {
            let entry = sums
                .entry((row.account_sid, row.category, row.day, row.currency))
                .or_default();
            entry.0 += row.count;
            entry.1 += row.minutes;
            entry.2 += row.price_micros;
        }
    }
    let stored_usage: UsageSums = usage
        .iter()
        .map(|u| {
            (
                (
                    u.account_sid.clone(),
                    u.category.clone(),
                    u.day,
                    u.currency.clone(),
                ),
                (u.count, u.minutes, u.price_micros),
            )
        })
        .collect();
    let keys: std::collections::BTreeSet<_> =
        sums.keys().chain(stored_usage.keys()).cloned().collect();
    for key in &keys {
        let (have, want) = (
            stored_usage.get(key).copied().unwrap_or_default(),
            sums.get(key).copied().unwrap_or_default(),
        );
        if have != want {
            let (account, category, day, currency) = key;
            println!(
                "differs: usage of {account} {category} on {day} ({currency}): the read model has {} calls, {} min, {}; the calls' charges sum to {} calls, {} min, {}",
                have.0, have.1, format_micros(have.2, 6), want.0, want.1, format_micros(want.2, 6)
            );
            return Ok(ExitCode::from(1));
        }
    }
    let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
    for ((_, _, _, currency), (_, _, price)) in &sums {
        *totals.entry(currency.as_str()).or_default() += price;
    }
    let totals: Vec<String> = totals
        .iter()
        .map(|(c, p)| format!("{} {c}", format_micros(*p, 6)))
        .collect();
    println!(
        "ok: {} legs, {} usage rows; usage equals the per-call charges to the micro-unit ({})",
        sids.len(),
        keys.len(),
        if totals.is_empty() {
            "nothing billed".to_owned()
        } else {
            totals.join(", ")
        }
    );
    Ok(ExitCode::SUCCESS)
}
