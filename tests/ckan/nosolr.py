"""Make ckan.lib.search work without a Solr server, in this process.

Shared by make_ini.py and driver.py, on every CKAN version from 2.8 (Python 2.7)
to 2.12: the module and class names patched here are the same in all of them.

From 2.10, package_create/update/delete index the dataset *before* the DB commit,
and a failing index call rolls the write back; in 2.8 and 2.9 the same happens
through the notification hook of the synchronous search plugin, and
bulk_update_* index directly. Indexing only reads the DB and talks HTTP, so
turning it into a no-op changes none of the SQL CKAN issues. Searches answer
"0 hits" (organization_show counts datasets with one), and package_show's
read-through of the index fails with SearchError so it always reads the DB.
Must run before CKAN's app is made, which also asks Solr for its schema version.
"""


def disable_solr():
    import ckan.lib.search as search
    from ckan.lib.search import index, query

    def nothing(self, *args, **kwargs):
        return None

    # Every write path of the package index, including the ones that
    # bulk_update_* and `search-index` reach through index_for().
    for method in ("index_package", "update_dict", "insert_dict",
                   "delete_package", "remove_dict", "commit", "clear"):
        setattr(index.PackageSearchIndex, method, nothing)

    def no_hits(self, *args, **kwargs):
        self.count = 0
        self.results = []
        self.facets = {}
        return {"results": [], "count": 0, "facets": {}}

    def not_indexed(self, reference):
        raise search.SearchError("ckan-webhooks test driver: no Solr")

    query.PackageSearchQuery.run = no_hits
    query.PackageSearchQuery.get_index = not_indexed
    query.PackageSearchQuery.get_all_entity_ids = lambda self, *a, **k: []
    search.check_solr_schema_version = lambda *a, **k: False
