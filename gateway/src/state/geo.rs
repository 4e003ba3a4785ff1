//! Distances on the Earth, for the memory engine (Redis computes its own).

/// Redis' geo index accepts latitudes only within this bound (Web Mercator); positions beyond it
/// are stored but not searchable, in both engines alike.
pub const MAX_INDEXED_LAT: f64 = 85.051_128_78;

/// Redis' Earth radius (meters), so both engines agree on distances.
const EARTH_RADIUS_M: f64 = 6_372_797.560_856;

/// Great-circle distance in meters (haversine).
pub fn distance_m(lat1: f64, lng1: f64, lat2: f64, lng2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = (lat2 - lat1).to_radians();
    let dl = (lng2 - lng1).to_radians();
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * a.sqrt().asin()
}

pub fn indexable(lat: f64) -> bool {
    lat.abs() <= MAX_INDEXED_LAT
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_degree_of_latitude_is_about_111_km() {
        let d = super::distance_m(0.0, 0.0, 1.0, 0.0);
        assert!((d - 111_226.0).abs() < 100.0, "{d}");
        assert_eq!(super::distance_m(48.85, 2.35, 48.85, 2.35), 0.0);
    }
}
