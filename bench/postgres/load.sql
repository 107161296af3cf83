-- Bulk load of pledges first..last (psql variables), one transaction, as a bank's batch import
-- would do it: same data, same rules and the same indexes as register.sql's registrations, set
-- at a time. bench/side-by-side.sh runs 4 of these at once, 10,000 pledges each, as ipledger's
-- benchmark imports through 4 streams of 10,000 records. Pledgors and right numbers follow the
-- pledge's serial n, as in ipledger's generator, so the load never collides with itself.
\set ON_ERROR_STOP on
BEGIN;
CREATE TEMP TABLE batch ON COMMIT DROP AS
SELECT n,
       gen_random_uuid() AS id,
       bank + 40 * floor(random() * 25)::int AS line,
       base + floor(random() * 4 * base) + floor(random() * 100) / 100 AS amount,
       year,
       month,
       day,
       year + 1 + floor(random() * 3)::int AS end_year,
       1 + floor(random() * 10)::int * floor(random() * 10)::int / 10 AS rights,
       1 + floor(random() * 12)::int AS city,
       1 + floor(random() * 20)::int AS county
FROM (SELECT n,
             floor(random() * (1 + floor(random() * 40)))::int AS bank,
             (10::numeric ^ (5 + floor(random() * 4)::int))::bigint AS base,
             2015 + floor(random() * 9)::int AS year,
             1 + floor(random() * 12)::int AS month,
             1 + floor(random() * 28)::int AS day
      FROM generate_series(:first::bigint, :last::bigint) AS n) AS drawn;

INSERT INTO pledges (id, request_id, pledgor_name, pledgor_credit_code, pledgee_name, pledgee_credit_code,
                     county_code, secured_amount, debt_term_start, debt_term_end, registered_on,
                     credit_line_id, created_by)
SELECT b.id,
       gen_random_uuid(),
       'Enterprise ' || b.n,
       '91330100' || lpad(b.n::text, 9, '0') || '7',
       c.bank_name,
       c.bank_credit_code,
       left(c.region_code, 2) || lpad(b.city::text, 2, '0') || lpad(b.county::text, 2, '0'),
       b.amount,
       make_date(b.year, b.month, b.day),
       make_date(b.end_year, b.month, b.day),
       make_date(b.year, b.month, b.day),
       c.id,
       'admin'
FROM batch AS b
JOIN credit_lines AS c ON c.id = md5('line-' || b.line)::uuid;

INSERT INTO pledged_rights (pledge_id, position, kind, number, title, expires_on)
SELECT id,
       g,
       kind,
       CASE kind WHEN 'TRADEMARK' THEN serial WHEN 'COPYRIGHT' THEN year || 'SR' || serial ELSE 'ZL' || serial END,
       CASE kind WHEN 'INVENTION_PATENT' THEN 'Invention' WHEN 'UTILITY_MODEL' THEN 'Utility model'
                 WHEN 'TRADEMARK' THEN 'Mark' ELSE 'Software' END || ' ' || n || '-' || g,
       make_date(year + CASE kind WHEN 'INVENTION_PATENT' THEN 19 WHEN 'UTILITY_MODEL' THEN 9
                                  WHEN 'TRADEMARK' THEN 10 ELSE 50 END, 12, 31)
FROM (SELECT id, n, year, g,
             (CASE WHEN r < 6 THEN 'INVENTION_PATENT' WHEN r < 8 THEN 'UTILITY_MODEL'
                   WHEN r < 9 THEN 'TRADEMARK' ELSE 'COPYRIGHT' END)::right_kind AS kind,
             lpad((n * 10 + g)::text, 15, '0') AS serial
      FROM (SELECT b.id, b.n, b.year, g, floor(random() * 10)::int AS r
            FROM batch AS b, generate_series(1, b.rights) AS g) AS d) AS k;

-- Lock the lines in one order first: concurrent batches drawing on the same lines in different
-- orders would deadlock. NO KEY UPDATE, the lock the UPDATE takes, since FOR UPDATE would also
-- wait for the key-share locks the other batches' foreign keys hold on the same lines.
SELECT count(*) FROM (SELECT 1 FROM credit_lines
                      WHERE id IN (SELECT md5('line-' || line)::uuid FROM batch)
                      ORDER BY id FOR NO KEY UPDATE) AS locked \g /dev/null
UPDATE credit_lines AS c
SET drawn = c.drawn + s.total, updated_at = now()
FROM (SELECT md5('line-' || line)::uuid AS id, sum(amount) AS total FROM batch GROUP BY 1) AS s
WHERE c.id = s.id;
COMMIT;
