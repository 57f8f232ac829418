//! `dataQuality`: the caller's workspace's data-quality report (`domain::quality`) and its
//! trend over the recorded days. The report is computed once per request, and only when
//! one of its figures is asked for: `dataQuality { trend { … } }` reads the snapshots alone.

use async_graphql::{Context, MergedObject, Object, Result, SimpleObject};
use chrono::{DateTime, NaiveDate, Utc};
use tokio::sync::OnceCell;

use super::{app, caller};
use crate::domain::quality::{self, QualityField, QualityReport};

/// The data quality of the workspace's live customers (merged ones aside), now, and its
/// trend: one report a day is recorded by the server and by `rapport quality`.
#[derive(MergedObject)]
pub struct DataQuality(QualityFigures, QualityTrend);

/// `dataQuality`.
pub(super) fn data_quality() -> DataQuality {
    DataQuality(
        QualityFigures {
            report: OnceCell::new(),
        },
        QualityTrend,
    )
}

/// A report's figures: computed on first use (`dataQuality`), or as recorded (a trend's
/// snapshot).
pub struct QualityFigures {
    report: OnceCell<QualityReport>,
}

impl QualityFigures {
    async fn get(&self, ctx: &Context<'_>) -> Result<&QualityReport> {
        self.report
            .get_or_try_init(|| async {
                let report =
                    quality::report(&app(ctx).db, caller(ctx)?, crate::domain::now()).await?;
                Ok::<_, async_graphql::Error>(report)
            })
            .await
    }
}

fn count(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A workspace's data quality at one moment: how complete and valid its customers'
/// fields are, and how many customers need attention.
#[Object(name = "QualityReport")]
impl QualityFigures {
    /// Live customers (merged ones aside): what every ratio is over.
    async fn customers(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(count(self.get(ctx).await?.customers))
    }
    /// How many customers have each field: the given and family names, birth date,
    /// street, locality, postal code, country, organization, and an e-mail or a phone
    /// contact point.
    async fn completeness(&self, ctx: &Context<'_>) -> Result<Vec<FieldCompleteness>> {
        Ok(self
            .get(ctx)
            .await?
            .completeness
            .iter()
            .map(|c| FieldCompleteness {
                field: c.field,
                filled: count(c.filled),
                ratio: c.ratio,
            })
            .collect())
    }
    /// Stored values that today's rules refuse (a record written before a rule, or
    /// changed outside Rapport), per checked field, zeros included: names, birth date,
    /// address lines, postal code (against the country's pattern), country, and e-mail,
    /// phone (in the workspace's default region) and website contact points.
    async fn invalid_values(&self, ctx: &Context<'_>) -> Result<Vec<FieldCount>> {
        Ok(field_counts(&self.get(ctx).await?.invalid_values))
    }
    /// Customers with at least one such invalid value.
    async fn with_invalid_values(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(count(self.get(ctx).await?.with_invalid_values))
    }
    /// Values ingestion and imports dropped as invalid on the report's day (UTC), per
    /// field; only fields with drops are listed. The item or row itself was kept.
    async fn dropped_values(&self, ctx: &Context<'_>) -> Result<Vec<FieldCount>> {
        Ok(field_counts(&self.get(ctx).await?.dropped_values))
    }
    /// Pending duplicate suggestions between two live customers (`duplicateSuggestions`
    /// lists them).
    async fn pending_duplicates(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(count(self.get(ctx).await?.pending_duplicates))
    }
    /// Customers without any contact point (e-mail, phone, postal address or website):
    /// only reachable on the channels they wrote from.
    async fn without_contact_point(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(count(self.get(ctx).await?.without_contact_point))
    }
    /// Customers with no activity (`lastSeenAt`) and no change (`updatedAt`) for
    /// `staleAfterDays` days.
    async fn stale(&self, ctx: &Context<'_>) -> Result<i64> {
        Ok(count(self.get(ctx).await?.stale))
    }
    /// The workspace's setting `stale` was counted with (`WorkspaceSettings.staleAfterDays`).
    async fn stale_after_days(&self, ctx: &Context<'_>) -> Result<i32> {
        Ok(i32::try_from(self.get(ctx).await?.stale_after_days).unwrap_or(i32::MAX))
    }
    /// An overall score in [0, 1] (1 for an empty workspace): the mean of five parts —
    /// completeness (the mean ratio of `completeness`), validity (the share of customers
    /// without an invalid value), reachability (with a contact point), freshness (not
    /// stale) and uniqueness (1 − pending duplicates per customer, at least 0) — to three
    /// decimals.
    async fn score(&self, ctx: &Context<'_>) -> Result<f64> {
        Ok(self.get(ctx).await?.score)
    }
    /// When the report was computed.
    async fn computed_at(&self, ctx: &Context<'_>) -> Result<DateTime<Utc>> {
        Ok(self.get(ctx).await?.computed_at)
    }
}

fn field_counts(counts: &[quality::FieldCount]) -> Vec<FieldCount> {
    counts
        .iter()
        .map(|c| FieldCount {
            field: c.field,
            count: count(c.count),
        })
        .collect()
}

/// How many live customers have a field.
#[derive(SimpleObject)]
pub struct FieldCompleteness {
    /// The field.
    pub field: QualityField,
    /// Customers who have it.
    pub filled: i64,
    /// `filled` over the live customers, in [0, 1]; 1 when there are none.
    pub ratio: f64,
}

/// A number of values of one field.
#[derive(SimpleObject)]
pub struct FieldCount {
    /// The field.
    pub field: QualityField,
    /// How many values.
    pub count: i64,
}

/// The trend part of `DataQuality`.
pub struct QualityTrend;

#[Object]
impl QualityTrend {
    /// The recorded reports of the last `days` days (today, UTC, included), oldest first;
    /// a day nothing was recorded on is missing. Each day's `droppedValues` are that
    /// whole day's.
    async fn trend(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            default = 30,
            desc = "How many days back, 1 to 366 (30 when left out or null); `BAD_USER_INPUT` outside that range."
        )]
        days: Option<i32>,
    ) -> Result<Vec<QualitySnapshot>> {
        let days = days.map_or(quality::DEFAULT_TREND_DAYS, i64::from);
        let today = crate::domain::now().date_naive();
        let snapshots = quality::trend(&app(ctx).db, caller(ctx)?, days, today).await?;
        Ok(super::charged(ctx, snapshots)?
            .into_iter()
            .map(QualitySnapshot)
            .collect())
    }
}

/// One day's recorded report.
pub struct QualitySnapshot(quality::Snapshot);

/// One day's recorded data-quality report.
#[Object]
impl QualitySnapshot {
    /// The day (UTC) it stands for.
    async fn day(&self) -> NaiveDate {
        self.0.day
    }
    /// When it was last recorded that day (a later recording replaces the earlier).
    async fn recorded_at(&self) -> DateTime<Utc> {
        self.0.recorded_at
    }
    /// The report as recorded.
    async fn report(&self) -> QualityFigures {
        QualityFigures {
            report: OnceCell::from(self.0.report.clone()),
        }
    }
}
