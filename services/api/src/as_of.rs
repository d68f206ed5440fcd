//! `AsOf`: a resource as it stood at an earlier point of the log (an RFC 3339 time or a
//! position token), computed by replaying the log up to there (`dialtone_projections::replay`),
//! never from today's read models.

use dialtone_events::envelope::parse_time;
use dialtone_projections::replay::Until;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::params::Params;
use crate::ApiState;

/// The `AsOf` parameter, if given: a time not in the future, or a position of this log not
/// past its end. Anything else is a 400 naming the parameter.
pub(crate) async fn parse(state: &ApiState, params: &Params) -> Result<Option<Until>, ApiError> {
    let Some(value) = params.non_empty("AsOf") else {
        return Ok(None);
    };
    if let Ok(time) = parse_time(value) {
        if time > OffsetDateTime::now_utc() {
            return Err(ApiError::invalid(format!(
                "AsOf {value} is in the future: the log has nothing after now"
            )));
        }
        return Ok(Some(Until::Time(time)));
    }
    let cursor = state.log.parse_position(value).map_err(|e| {
        ApiError::invalid(format!(
            "AsOf must be an RFC 3339 time (2026-12-07T10:00:00Z) or an event position: {e}"
        ))
    })?;
    let head = state.log.head().await?;
    let beyond = cursor
        .0
        .iter()
        .any(|(partition, next)| *next > head.next_offset(partition));
    if beyond {
        return Err(ApiError::invalid(format!(
            "AsOf position {value} is in the future: the log does not reach it yet"
        )));
    }
    Ok(Some(Until::Cursor(cursor)))
}
