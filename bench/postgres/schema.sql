-- The ledger of IP pledges as a bank would write it in plain PostgreSQL 15, with the same rules
-- as ipledger: a credit line is never overdrawn (a CHECK), a right is in at most one active
-- pledge (a unique partial index), a registration number and a request id are unique, amounts
-- are exact decimals. bench/side-by-side.sh loads it and drives it with pgbench (register.sql)
-- to compare it with ipledger on the same machine. No tuning beyond what a DBA would do: the
-- indexes serve the reads a bank runs (pledges of a county, of a pledgee, of a pledgor, of a
-- credit line); everything else is PostgreSQL's defaults.

CREATE TYPE right_kind AS ENUM ('INVENTION_PATENT', 'UTILITY_MODEL', 'DESIGN_PATENT', 'TRADEMARK', 'COPYRIGHT');

CREATE TABLE credit_lines (
    id               uuid PRIMARY KEY,
    bank_name        text NOT NULL,
    bank_credit_code varchar(18) NOT NULL CHECK (length(bank_credit_code) = 18),
    -- The province, city or county the line was signed for (GB/T 2260 code).
    region_code      char(6) NOT NULL CHECK (region_code ~ '^[0-9]{6}$'),
    program          text,
    limit_amount     numeric(20, 2) NOT NULL CHECK (limit_amount > 0),
    drawn            numeric(20, 2) NOT NULL DEFAULT 0 CHECK (drawn >= 0),
    valid_from       date NOT NULL,
    valid_to         date NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- The rule: a registration that would overdraw the line fails its UPDATE, and so its transaction.
    CONSTRAINT credit_line_not_overdrawn CHECK (drawn <= limit_amount),
    CHECK (valid_from <= valid_to)
);
CREATE INDEX credit_lines_by_bank ON credit_lines (bank_credit_code);

-- Registration numbers "IPL-<year>-<serial>", as ipledger assigns them.
CREATE SEQUENCE registration_serial;

CREATE TABLE pledges (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    registration_number text NOT NULL UNIQUE
        DEFAULT 'IPL-' || extract(year FROM current_date) || '-' || lpad(nextval('registration_serial')::text, 10, '0'),
    -- The caller's idempotency key: a retried registration finds its first answer.
    request_id          uuid NOT NULL UNIQUE,
    pledgor_name        text NOT NULL,
    pledgor_credit_code varchar(18) NOT NULL CHECK (length(pledgor_credit_code) = 18),
    pledgee_name        text NOT NULL,
    pledgee_credit_code varchar(18) NOT NULL CHECK (length(pledgee_credit_code) = 18),
    county_code         char(6) NOT NULL CHECK (county_code ~ '^[0-9]{6}$'),
    secured_amount      numeric(20, 2) NOT NULL CHECK (secured_amount > 0),
    debt_term_start     date NOT NULL,
    debt_term_end       date NOT NULL,
    registered_on       date NOT NULL,
    credit_line_id      uuid REFERENCES credit_lines (id),
    released            boolean NOT NULL DEFAULT false,
    released_on         date,
    release_reason      text,
    release_note        text,
    created_by          text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    version             integer NOT NULL DEFAULT 1,
    CHECK (debt_term_start <= debt_term_end),
    CHECK (released = (released_on IS NOT NULL))
);
-- The reads: exposure of a region (county codes nest: a province or city is a prefix range),
-- a bank's book, an enterprise's pledges, the pledges drawing on a credit line.
CREATE INDEX pledges_by_county ON pledges (county_code);
CREATE INDEX pledges_by_pledgee ON pledges (pledgee_credit_code);
CREATE INDEX pledges_by_pledgor ON pledges (pledgor_credit_code);
CREATE INDEX pledges_by_credit_line ON pledges (credit_line_id);

CREATE TABLE pledged_rights (
    pledge_id  uuid NOT NULL REFERENCES pledges (id),
    position   smallint NOT NULL,
    kind       right_kind NOT NULL,
    number     text NOT NULL,
    title      text NOT NULL,
    -- The day the right lapses (the application checks the debt term ends before it).
    expires_on date NOT NULL,
    -- Cleared when the pledge is released, in the same transaction.
    active     boolean NOT NULL DEFAULT true,
    PRIMARY KEY (pledge_id, position)
);
-- The rule: a right is in at most one active pledge, under any concurrency (the second
-- registration of a right waits for the first to commit, then fails on this index).
CREATE UNIQUE INDEX pledged_rights_one_active_pledge ON pledged_rights (kind, number) WHERE active;
