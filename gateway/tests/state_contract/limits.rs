//! Per-user limits: sockets per user, handshakes per window.

use super::*;

contract!(
    a_user_keeps_at_most_max_sockets,
    handshakes_are_counted_per_window,
);

async fn a_user_keeps_at_most_max_sockets(world: World) -> Result<(), StateError> {
    let e = world.engine("n1");
    let user = driver(&world, "u1");
    for s in ["s1", "s2", "s3"] {
        assert!(
            e.user_socket_opened(Namespace::Passengers, &user, s, 3)
                .await?
                .is_empty()
        );
        // Sockets open in distinct milliseconds, as handshakes do.
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    assert_eq!(
        e.user_socket_opened(Namespace::Passengers, &user, "s4", 3)
            .await?,
        ["s1"]
    );
    assert!(
        e.user_socket_opened(Namespace::Drivers, &user, "x1", 3)
            .await?
            .is_empty(),
        "per namespace"
    );
    e.user_socket_closed(Namespace::Passengers, &user, "s2")
        .await?;
    assert!(
        e.user_socket_opened(Namespace::Passengers, &user, "s5", 3)
            .await?
            .is_empty()
    );
    assert!(
        e.user_socket_opened(Namespace::Passengers, &user, "s6", 0)
            .await?
            .is_empty(),
        "0: no limit"
    );
    Ok(())
}

async fn handshakes_are_counted_per_window(world: World) -> Result<(), StateError> {
    let e = world.engine("n1");
    let user = driver(&world, "u1");
    let window = Duration::from_millis(400);
    for _ in 0..3 {
        assert!(e.handshake_allowed(&user, 3, window).await?);
    }
    assert!(!e.handshake_allowed(&user, 3, window).await?);
    assert!(
        e.handshake_allowed(&driver(&world, "u2"), 3, window)
            .await?,
        "per user"
    );
    tokio::time::sleep(window + Duration::from_millis(50)).await;
    assert!(e.handshake_allowed(&user, 3, window).await?, "a new window");
    Ok(())
}
