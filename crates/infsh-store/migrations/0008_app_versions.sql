-- infsh store, version 8: app versions. A version is an app's files,
-- named by the SHA-256 of its package's content (paths and bytes); the
-- package itself is kept on disk beside the files (`VersionPackages`), the
-- row says what became of it. Same portable SQL as 0001.
CREATE TABLE app_versions (
    -- `namespace/name`.
    app TEXT NOT NULL,
    -- Lowercase hex SHA-256 of the content (64 characters).
    hash TEXT NOT NULL,
    -- Bytes of the package as uploaded.
    size_bytes BIGINT NOT NULL,
    -- building (environment and discovery under way), ready (may become
    -- current), failed (never becomes current; `error` says why).
    status TEXT NOT NULL,
    -- The build's or import's failure, traceback included.
    error TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (app, hash)
);

-- Which version of each app new runs without `@version` get.
CREATE TABLE app_current_versions (
    app TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
