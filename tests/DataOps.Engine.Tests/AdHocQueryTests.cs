using DataOps.Engine.Connections;
using DataOps.Engine.Queries;
using DataOps.Tests;

namespace DataOps.Engine.Tests;

/// <summary>Invoke-DataOpsQuery's engine: values bound and never interpolated, read-only that holds, errors without secrets.</summary>
public sealed class AdHocQueryTests
{
    private const string Secret = "q-Secr3t-zz81";

    [Theory]
    [InlineData("SELECT * FROM t WHERE id = @id", "", "id")]
    [InlineData("DELETE FROM t WHERE id = @ID AND v = @v", "id", "v")]
    [InlineData("SELECT '@x', \"@y\", $$ @z $$, $q$ @w $q$ -- @c\n/* @d */ FROM t", "", "")]
    [InlineData("SELECT doc @> '{}' , tags <@ arr, tsv @@ q, a@b FROM t", "", "")]
    [InlineData("SELECT 'ops@example.com', x::text, @@version FROM t WHERE a = :a", "", "")]
    [InlineData("SELECT @a, @a, @b", "b", "a")]
    public void An_at_name_that_no_parameter_binds_is_found_outside_literals_and_comments(string sql, string bound, string expected)
    {
        var unbound = AdHocQuery.UnboundPlaceholders(sql, bound.Split(',', StringSplitOptions.RemoveEmptyEntries));

        Assert.Equal(expected.Split(',', StringSplitOptions.RemoveEmptyEntries), unbound);
    }

    [Theory]
    [InlineData("@id", "id")]
    [InlineData(":since", "since")]
    [InlineData("_x1", "_x1")]
    public void A_parameter_name_may_carry_its_placeholder_prefix(string given, string expected) =>
        Assert.Equal(expected, AdHocQuery.ParameterName(given));

    [Theory]
    [InlineData("")]
    [InlineData("my id")]
    [InlineData("1st")]
    [InlineData("id;DROP")]
    public void A_name_that_cannot_be_a_placeholder_is_refused_with_the_name(string given)
    {
        var ex = Assert.Throws<DataOpsException>(() => AdHocQuery.ParameterName(given));

        Assert.Equal(("QueryParameterInvalid", DataOpsErrorKind.InvalidArgument, (object)given), (ex.ErrorId, ex.Kind, ex.Target));
    }

    [Fact]
    public void A_password_literal_in_the_query_text_is_masked_where_the_text_is_shown()
    {
        var safe = AdHocQuery.SafeText($"ALTER ROLE app PASSWORD '{Secret}''x' VALID UNTIL 'infinity'");

        Assert.DoesNotContain(Secret, safe);
        Assert.Contains("PASSWORD '********' VALID UNTIL 'infinity'", safe);
    }

    [Fact]
    public async Task Rows_come_back_per_result_set_with_unique_column_names_nulls_and_instants()
    {
        var db = new DatabaseFixture();

        var rows = await Rows(db.Connection, new QueryRequest { Sql = "SELECT 1 AS a, 2 AS \"A\", NULL AS n, now() AS t, int4range(1, 5) AS r; SELECT 'x' AS only" });

        Assert.Equal(2, rows.Count);
        Assert.Equal(["a", "A_2", "n", "t", "r"], rows[0].Columns);
        Assert.Null(rows[0].Values[2]);
        Assert.IsType<DateTimeOffset>(rows[0].Values[3]);
        Assert.Equal("[1,5)", rows[0].Values[4]);
        Assert.Equal(["only"], rows[1].Columns);
    }

    [Fact]
    public async Task A_value_is_bound_as_a_parameter_so_quotes_in_it_change_nothing_and_strings_take_the_column_type()
    {
        var db = new DatabaseFixture();
        var id = Guid.NewGuid();
        db.Execute($"CREATE TABLE item (id uuid PRIMARY KEY, name text, day date, doc jsonb); INSERT INTO item VALUES ('{id}', 'a', '2024-05-01', '{{\"k\": 1}}')");
        var hostile = "x'; DROP TABLE item; --";

        var byString = await AdHocQuery.ScalarAsync(db.Connection, new QueryRequest
        {
            Sql = "SELECT count(*) FROM item WHERE id = @id AND day = @day AND doc @> @doc",
            Parameters = new Dictionary<string, object?> { ["id"] = id.ToString(), ["day"] = "2024-05-01", ["doc"] = "{\"k\": 1}" },
            ReadOnly = true,
        });
        var none = await AdHocQuery.ScalarAsync(db.Connection, new QueryRequest
        {
            Sql = "SELECT count(*) FROM item WHERE name = @name OR name = ANY(@names)",
            Parameters = new Dictionary<string, object?> { ["@name"] = hostile, ["names"] = new object?[] { hostile, "b" } },
        });

        Assert.Equal(1L, byString);
        Assert.Equal(0L, none);
        Assert.Equal(1L, db.Scalar<long>("SELECT count(*) FROM item"));
    }

    /// <summary>Each tries to change a row from inside -ReadOnly; the expected ErrorId says how it was stopped.</summary>
    public static TheoryData<string, string> HostileReadOnly => new()
    {
        { "DELETE FROM victim", "ReadOnlyViolation" },
        { "WITH d AS (DELETE FROM victim RETURNING 1) SELECT count(*) FROM d", "ReadOnlyViolation" },
        { "SELECT evil()", "ReadOnlyViolation" },
        { "COMMIT; DELETE FROM victim", "QueryMultipleStatements" },
        { "SELECT 1; COMMIT; BEGIN READ WRITE; DELETE FROM victim", "QueryMultipleStatements" },
        { "SELECT set_config('transaction_read_only', 'off', true), evil()", "QueryFailed" },
        { "SELECT nextval('victim_seq')", "ReadOnlyViolation" },
    };

    [Theory]
    [MemberData(nameof(HostileReadOnly))]
    public async Task A_read_only_query_changes_nothing_whatever_it_tries(string sql, string errorId)
    {
        var db = new DatabaseFixture();
        db.Execute("CREATE TABLE victim (id int); INSERT INTO victim VALUES (1), (2); CREATE SEQUENCE victim_seq; " +
                   "CREATE FUNCTION evil() RETURNS int LANGUAGE plpgsql AS $$ BEGIN DELETE FROM victim; RETURN 0; END $$");

        foreach (var parameters in new[] { new Dictionary<string, object?>(), new Dictionary<string, object?> { ["unused"] = 1 } })
        {
            var ex = await Assert.ThrowsAsync<DataOpsException>(() => Rows(db.Connection, new QueryRequest { Sql = sql, Parameters = parameters, ReadOnly = true }));

            Assert.Equal(errorId, ex.ErrorId);
            Assert.Equal(2L, db.Scalar<long>("SELECT count(*) FROM victim"));
            Assert.Equal(1L, db.Scalar<long>("SELECT nextval('victim_seq')"));
            db.Execute("SELECT setval('victim_seq', 1, false)");
        }
    }

    [Fact]
    public async Task A_write_refused_by_read_only_is_a_WriteError_naming_the_query_and_the_server_message()
    {
        var db = new DatabaseFixture();
        db.Execute("CREATE TABLE victim (id int)");

        var ex = await Assert.ThrowsAsync<DataOpsException>(() => AdHocQuery.NonQueryAsync(db.Connection, new QueryRequest { Sql = "INSERT INTO victim VALUES (1)", ReadOnly = true }));

        Assert.Equal(("ReadOnlyViolation", DataOpsErrorKind.WriteError, (object)"INSERT INTO victim VALUES (1)"), (ex.ErrorId, ex.Kind, ex.Target));
        Assert.Contains("cannot execute INSERT in a read-only transaction", ex.Message);
        Assert.Equal("25006", ex.Data["SqlState"]);
    }

    [Fact]
    public async Task A_secret_parameter_and_the_connection_password_show_in_no_error()
    {
        var db = new DatabaseFixture();
        var request = new QueryRequest
        {
            Sql = "SELECT @pw::int",
            Parameters = new Dictionary<string, object?> { ["pw"] = Secret },
            SecretParameters = ["pw"],
            ReadOnly = true,
        };

        var ex = await Assert.ThrowsAsync<DataOpsException>(() => AdHocQuery.ScalarAsync(db.Connection, request));

        Assert.Equal(("QueryFailed", DataOpsErrorKind.InvalidData), (ex.ErrorId, ex.Kind));
        var password = new Npgsql.NpgsqlConnectionStringBuilder(db.Connection.ConnectionString).Password!;
        Assert.False(string.IsNullOrEmpty(password));
        foreach (var text in new[] { ex.Message, ex.ToString(), ex.Target?.ToString(), ex.RecommendedAction })
        {
            Assert.Empty(Encodings.FoundIn(text ?? string.Empty, Secret));
            Assert.Empty(Encodings.FoundIn(text ?? string.Empty, password));
        }
    }

    [Fact]
    public async Task A_query_over_its_timeout_is_cancelled_as_QueryTimeout()
    {
        var db = new DatabaseFixture();

        var ex = await Assert.ThrowsAsync<DataOpsException>(() => AdHocQuery.ScalarAsync(db.Connection, new QueryRequest { Sql = "SELECT pg_sleep(5)", ReadOnly = true, Timeout = TimeSpan.FromSeconds(1) }));

        Assert.Equal(("QueryTimeout", DataOpsErrorKind.OperationTimeout), (ex.ErrorId, ex.Kind));
    }

    [Fact]
    public async Task A_write_runs_its_statements_in_one_implicit_transaction_and_says_how_many_rows_it_changed()
    {
        var db = new DatabaseFixture();
        db.Execute("CREATE TABLE t (id int PRIMARY KEY)");

        var result = await AdHocQuery.NonQueryAsync(db.Connection, new QueryRequest { Sql = "INSERT INTO t VALUES (1), (2); UPDATE t SET id = id + 10" });
        var failed = await Assert.ThrowsAsync<DataOpsException>(() => AdHocQuery.NonQueryAsync(db.Connection, new QueryRequest { Sql = "INSERT INTO t VALUES (3); INSERT INTO t VALUES (11)" }));

        Assert.Equal(4, result.RowsAffected);
        Assert.False(result.ReadOnly);
        Assert.Equal("23505", failed.Data["SqlState"]);
        Assert.Equal(2L, db.Scalar<long>("SELECT count(*) FROM t"));
    }

    private static async Task<List<QueryRow>> Rows(DataOpsConnection connection, QueryRequest request)
    {
        var rows = new List<QueryRow>();
        await foreach (var row in AdHocQuery.RowsAsync(connection, request))
        {
            rows.Add(row);
        }

        return rows;
    }
}
