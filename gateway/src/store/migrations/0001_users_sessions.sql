-- Users and sessions, owned by the auth service; the gateway only reads them.
CREATE TABLE IF NOT EXISTS users (
    id uuid PRIMARY KEY,
    user_type text NOT NULL,  -- DRIVER | PASSENGER | ADMIN | DISPATCHER | SUPPORT
    status text NOT NULL,     -- ACTIVE | INACTIVE | SUSPENDED
    org_id text NULL          -- admins of an organisation also join admin:org:{org_id}
);

CREATE TABLE IF NOT EXISTS sessions (
    id uuid PRIMARY KEY,
    jti text NOT NULL UNIQUE, -- the `sid` claim of access tokens
    user_id uuid NOT NULL REFERENCES users(id),
    session_type text NULL,
    revoked boolean NOT NULL DEFAULT false,
    access_token_expires_at timestamptz NULL
);

CREATE INDEX IF NOT EXISTS sessions_user_id_idx ON sessions (user_id);
