SELECT * FROM (
SELECT s.id::text AS key FROM prism.sessions s WHERE s.status = 'completed'
) AS dataops_query
