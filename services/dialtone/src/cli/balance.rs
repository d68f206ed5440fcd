//! `dialtone billing credit` and `dialtone billing plan`: the operator records payments and
//! credits, and says how an account pays (prepaid, or postpaid with an optional credit
//! limit). Both are events on the account's stream.

use std::process::ExitCode;

use anyhow::Context;
use dialtone_events::payload::{AccountBillingPlanSet, AccountCredited};
use dialtone_events::sid::AccountSid;
use dialtone_events::{ExpectedVersion, NewEvent, Payload};
use dialtone_projections::billing::balance::{POSTPAID, PREPAID};
use serde_json::json;

use super::source::{LogArgs, Source};

#[derive(Debug, clap::Args)]
pub struct CreditArgs {
    /// The account (AC…).
    pub account: String,
    /// An exact decimal in the billing currency (at most its minor digits: cents for USD);
    /// negative takes money back.
    #[arg(allow_negative_numbers = true)]
    pub amount: String,
    /// The operator's reference (a payment id, an invoice).
    #[arg(long)]
    pub reference: Option<String>,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The account (AC…).
    pub account: String,
    /// New calls need a positive balance and end when it runs out.
    #[arg(long, conflicts_with = "postpaid")]
    pub prepaid: bool,
    /// Billed later.
    #[arg(long)]
    pub postpaid: bool,
    /// Postpaid: how far below zero the balance may go (an exact decimal).
    #[arg(long, requires = "postpaid")]
    pub credit_limit: Option<String>,
    #[command(flatten)]
    pub log: LogArgs,
}

/// Appends `payload` to the account's stream, which must exist.
async fn append(source: &Source, account: &str, payload: Payload) -> anyhow::Result<()> {
    AccountSid::parse(account).map_err(anyhow::Error::msg)?;
    let history = source.log.read_stream(account, 1).await?;
    anyhow::ensure!(!history.is_empty(), "no account {account} in this log");
    source
        .log
        .append(
            account,
            ExpectedVersion::Any,
            vec![NewEvent::new(account, payload)],
        )
        .await
        .context("writing to the log")?;
    Ok(())
}

pub async fn credit(args: CreditArgs) -> anyhow::Result<ExitCode> {
    let source = args.log.open().await?;
    let currency = source.config.billing.currency.to_ascii_uppercase();
    let amount_micros =
        dialtone_api::parse_amount(&args.amount, &currency).map_err(anyhow::Error::msg)?;
    let credited = AccountCredited {
        amount_micros,
        currency: currency.clone(),
        reference: args.reference.clone(),
    };
    append(&source, &args.account, credited.into()).await?;
    println!(
        "{}",
        json!({
            "account_sid": args.account,
            "amount": args.amount.trim(),
            "currency": currency,
            "reference": args.reference,
        })
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn plan(args: PlanArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.prepaid || args.postpaid, "say --prepaid or --postpaid");
    let source = args.log.open().await?;
    let currency = source.config.billing.currency.to_ascii_uppercase();
    let credit_limit_micros = args
        .credit_limit
        .as_deref()
        .map(|limit| dialtone_api::parse_amount(limit, &currency))
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let plan = if args.prepaid { PREPAID } else { POSTPAID };
    let set = AccountBillingPlanSet {
        plan: plan.to_owned(),
        credit_limit_micros,
    };
    append(&source, &args.account, set.into()).await?;
    println!(
        "{}",
        json!({"account_sid": args.account, "plan": plan, "credit_limit": args.credit_limit})
    );
    Ok(ExitCode::SUCCESS)
}
