create or replace function /* comment */ lower_case() returns int language sql begin atomic select 1; end;
