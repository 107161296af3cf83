-- The rules the benchmark claims for the PostgreSQL schema, checked on the loaded schema before
-- any measurement (bench/side-by-side.sh), inside a transaction that is rolled back: a second
-- active pledge of a right is refused, an overdraw of a credit line is refused, and a released
-- pledge's right may be pledged again. Any other outcome fails the run.
\set ON_ERROR_STOP on
BEGIN;
DO $$
DECLARE
    line uuid := md5('line-0')::uuid;
    first_pledge uuid;
    second_pledge uuid;
BEGIN
    INSERT INTO pledges (request_id, pledgor_name, pledgor_credit_code, pledgee_name, pledgee_credit_code,
                         county_code, secured_amount, debt_term_start, debt_term_end, registered_on,
                         credit_line_id, created_by)
    SELECT gen_random_uuid(), 'Rules check', '913301000000000017', bank_name, bank_credit_code, '330106',
           1000, DATE '2020-01-01', DATE '2021-01-01', DATE '2020-01-01', id, 'admin'
    FROM credit_lines WHERE id = line
    RETURNING id INTO first_pledge;
    INSERT INTO pledged_rights (pledge_id, position, kind, number, title, expires_on)
    VALUES (first_pledge, 1, 'INVENTION_PATENT', 'ZLRULESCHECK', 'Rules check', DATE '2039-12-31');

    INSERT INTO pledges (request_id, pledgor_name, pledgor_credit_code, pledgee_name, pledgee_credit_code,
                         county_code, secured_amount, debt_term_start, debt_term_end, registered_on,
                         credit_line_id, created_by)
    SELECT gen_random_uuid(), 'Rules check', '913301000000000017', bank_name, bank_credit_code, '330106',
           1000, DATE '2020-01-01', DATE '2021-01-01', DATE '2020-01-01', id, 'admin'
    FROM credit_lines WHERE id = line
    RETURNING id INTO second_pledge;
    BEGIN
        INSERT INTO pledged_rights (pledge_id, position, kind, number, title, expires_on)
        VALUES (second_pledge, 1, 'INVENTION_PATENT', 'ZLRULESCHECK', 'Rules check', DATE '2039-12-31');
        RAISE EXCEPTION 'a right was accepted in two active pledges';
    EXCEPTION WHEN unique_violation THEN
        NULL;
    END;

    BEGIN
        UPDATE credit_lines SET drawn = limit_amount + 0.01 WHERE id = line;
        RAISE EXCEPTION 'a credit line was overdrawn';
    EXCEPTION WHEN check_violation THEN
        NULL;
    END;

    -- Release frees the right: the same insert now succeeds.
    UPDATE pledges SET released = true, released_on = DATE '2020-06-30' WHERE id = first_pledge;
    UPDATE pledged_rights SET active = false WHERE pledge_id = first_pledge;
    INSERT INTO pledged_rights (pledge_id, position, kind, number, title, expires_on)
    VALUES (second_pledge, 1, 'INVENTION_PATENT', 'ZLRULESCHECK', 'Rules check', DATE '2039-12-31');
END
$$;
ROLLBACK;
