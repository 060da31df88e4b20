-- table_columns: every column of every table of the file, with its declared type and its place in
-- the primary key (0 when not part of it), to compare with the binary's schema model.
SELECT m.name AS table_name, c.name AS column_name, c.type AS data_type, c.pk AS primary_key
FROM sqlite_master m JOIN pragma_table_info(m.name) c
WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'
