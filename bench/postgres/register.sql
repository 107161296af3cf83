-- pgbench script: one pledge registration, the transaction a bank's application would run
-- (bench/side-by-side.sh runs it with -M prepared at 64 and 256 clients). The data follows
-- ipledger's generator (src/workload.rs): pledgees skewed toward a few banks, 1-9 rights
-- (2.66 on average: 1 + a*b/10 for a, b uniform in 0..9) of which 60% invention patents, 20%
-- utility models, 10% trademarks, 10% copyrights, amounts from 100 thousand to 500 million yuan,
-- mostly small, registered 2015-2023 with a debt term of 1-3 years, within the rights' lives.
-- Right numbers are random 15-digit serials (about 1e15 of them, so a collision, which would
-- fail the transaction on the one-active-pledge index, is unlikely in a run).
\set bound random(1, 40)
\set bank random(0, :bound - 1)
\set line :bank + 40 * random(0, 24)
\set city random(1, 12)
\set county random(1, 20)
\set enterprise random(1, 999999999)
\set base int(pow(10, random(5, 8)))
\set yuan :base + random(0, 4 * :base - 1)
\set cents random(0, 99)
\set year random(2015, 2023)
\set month random(1, 12)
\set day random(1, 28)
\set end_year :year + 1 + random(0, 2)
\set rights 1 + random(0, 9) * random(0, 9) / 10
BEGIN;
-- The pledgee is the credit line's bank and the county lies in the line's province, so the
-- application's checks of bank and region pass by construction.
INSERT INTO pledges (request_id, pledgor_name, pledgor_credit_code, pledgee_name, pledgee_credit_code,
                     county_code, secured_amount, debt_term_start, debt_term_end, registered_on,
                     credit_line_id, created_by)
SELECT gen_random_uuid(),
       'Enterprise ' || :enterprise::text,
       '91330100' || lpad(:enterprise::text, 9, '0') || '7',
       bank_name,
       bank_credit_code,
       left(region_code, 2) || lpad(:city::text, 2, '0') || lpad(:county::text, 2, '0'),
       :yuan::numeric + :cents::numeric / 100,
       make_date(:year::int, :month::int, :day::int),
       make_date(:end_year::int, :month::int, :day::int),
       make_date(:year::int, :month::int, :day::int),
       id,
       'admin'
FROM credit_lines
WHERE id = md5('line-' || :line::text)::uuid
RETURNING id AS pledge_id \gset
-- The rights, in one statement; kind and number are drawn per right (a subquery with a
-- volatile target list is evaluated once per row, not flattened).
INSERT INTO pledged_rights (pledge_id, position, kind, number, title, expires_on)
SELECT :pledge_id::uuid,
       g,
       kind,
       CASE kind WHEN 'TRADEMARK' THEN serial WHEN 'COPYRIGHT' THEN :year::text || 'SR' || serial ELSE 'ZL' || serial END,
       CASE kind WHEN 'INVENTION_PATENT' THEN 'Invention' WHEN 'UTILITY_MODEL' THEN 'Utility model'
                 WHEN 'TRADEMARK' THEN 'Mark' ELSE 'Software' END || ' ' || :enterprise::text || '-' || g,
       make_date(:year::int + CASE kind WHEN 'INVENTION_PATENT' THEN 19 WHEN 'UTILITY_MODEL' THEN 9
                                        WHEN 'TRADEMARK' THEN 10 ELSE 50 END, 12, 31)
FROM (SELECT g,
             (CASE WHEN r < 6 THEN 'INVENTION_PATENT' WHEN r < 8 THEN 'UTILITY_MODEL'
                   WHEN r < 9 THEN 'TRADEMARK' ELSE 'COPYRIGHT' END)::right_kind AS kind,
             lpad((random() * 1e15)::bigint::text, 15, '0') AS serial
      FROM (SELECT g, floor(random() * 10)::int AS r FROM generate_series(1, :rights::int) AS g) AS d) AS k;
-- Last, so the line's row lock is held only until the commit: the CHECK refuses an overdraw.
UPDATE credit_lines
SET drawn = drawn + :yuan::numeric + :cents::numeric / 100, updated_at = now()
WHERE id = md5('line-' || :line::text)::uuid;
END;
