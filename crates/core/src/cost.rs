//! Prices: monthly storage and one-time egress, per GB (2^30 bytes, as cloud
//! price lists count).

use crate::topology::Region;

pub const GB: f64 = (1u64 << 30) as f64;

/// Monthly storage cost of `bytes` in `region`.
pub fn monthly(bytes: u64, region: &Region) -> f64 {
    bytes as f64 / GB * region.storage_price_gb_month
}

/// One-time egress cost of sending `bytes` out of `region`.
pub fn egress(bytes: u64, region: &Region) -> f64 {
    bytes as f64 / GB * region.egress_price_gb
}

/// Egress of a move from `from` to `to`: each new destination is fed from the
/// source region with the cheapest egress.
pub fn move_egress(bytes: u64, from: &[&Region], to: &[&Region]) -> f64 {
    match move_egress_parts(from, to) {
        Some((new_destinations, price)) => new_destinations as f64 * bytes as f64 / GB * price,
        None => 0.0,
    }
}

/// What [`move_egress`] multiplies: the number of new destinations and the
/// cheapest source's egress price per GB; `None` when nothing is sent (no
/// new destination, or no known source).
pub fn move_egress_parts(from: &[&Region], to: &[&Region]) -> Option<(u64, f64)> {
    let new_destinations = to
        .iter()
        .filter(|t| !from.iter().any(|f| f.id == t.id))
        .count() as u64;
    if new_destinations == 0 {
        return None;
    }
    let cheapest = from
        .iter()
        .map(|r| r.egress_price_gb)
        .fold(f64::INFINITY, f64::min);
    if !cheapest.is_finite() {
        return None;
    }
    Some((new_destinations, cheapest))
}
