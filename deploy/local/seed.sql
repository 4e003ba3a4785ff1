-- Demo users and sessions of the local cluster (idempotent). Each run makes the demo sessions
-- usable again (not revoked, no access expiry).
INSERT INTO users (id, user_type, status, org_id) VALUES
    ('11111111-1111-4111-8111-111111111111', 'DRIVER', 'ACTIVE', NULL),
    ('22222222-2222-4222-8222-222222222222', 'PASSENGER', 'ACTIVE', NULL),
    ('33333333-3333-4333-8333-333333333333', 'ADMIN', 'ACTIVE', 'demo-org')
ON CONFLICT (id) DO UPDATE SET user_type = EXCLUDED.user_type, status = EXCLUDED.status, org_id = EXCLUDED.org_id;

INSERT INTO sessions (id, jti, user_id, session_type, revoked, access_token_expires_at) VALUES
    ('a1111111-1111-4111-8111-111111111111', 'demo-driver-session', '11111111-1111-4111-8111-111111111111', 'mobile', false, NULL),
    ('a2222222-2222-4222-8222-222222222222', 'demo-passenger-session', '22222222-2222-4222-8222-222222222222', 'mobile', false, NULL),
    ('a3333333-3333-4333-8333-333333333333', 'demo-admin-session', '33333333-3333-4333-8333-333333333333', 'web', false, NULL)
ON CONFLICT (id) DO UPDATE SET revoked = false, access_token_expires_at = NULL;
