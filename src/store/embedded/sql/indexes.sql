-- indexes: every index created by a migration and the table it is on (SQLite's automatic indexes
-- for primary keys and unique constraints are left out; the model names a primary key <table>_pkey
-- itself).
SELECT name, tbl_name FROM sqlite_master
WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex_%'
