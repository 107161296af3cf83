-- The credit lines the benchmark's pledges draw on: 40 banks (named and coded as ipledger's
-- generator names its pledgees) with 25 lines each, every line signed in one of the 8 provinces
-- the generator draws counties from, province k % 8 for line bank + 40 k. A line's id is derived
-- from its number (md5('line-' || number)), so register.sql and load.sql name a line as a client
-- holding its id would, without a lookup. The limits are high enough that the benchmark never
-- hits them: a refusal would abort a pgbench client, and ipledger's benchmark is refused nothing.
INSERT INTO credit_lines (id, bank_name, bank_credit_code, region_code, program, limit_amount, valid_from, valid_to)
SELECT md5('line-' || i)::uuid,
       'Bank ' || i % 40,
       '91110000' || (500000000 + i % 40) || '7',
       (ARRAY['330000', '320000', '440000', '370000', '110000', '310000', '510000', '420000'])[1 + (i / 40) % 8],
       'IP pledge financing',
       1e15,
       DATE '2010-01-01',
       DATE '2035-12-31'
FROM generate_series(0, 999) AS i;
