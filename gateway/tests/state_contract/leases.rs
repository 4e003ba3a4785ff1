//! Replica leases and their counts.

use super::*;

contract!(leases_and_counts,);

async fn leases_and_counts(world: World) -> Result<(), StateError> {
    let e = world.engine("n1");
    let stats = NodeStats {
        node_id: "n1".into(),
        drivers: 3,
        passengers: 2,
        admin: 1,
    };
    let first = e.renew_lease(&stats).await?;
    // A shared store remembers no lease of a new replica; memory has nothing to lose.
    assert_eq!(first, !world.shared());
    assert!(e.renew_lease(&stats).await?, "live since the first renewal");
    let live = e.live_nodes().await?;
    assert!(live.contains(&stats), "{live:?}");
    Ok(())
}
