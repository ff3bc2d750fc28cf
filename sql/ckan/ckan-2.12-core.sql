-- The part of a CKAN 2.12 database this service reads and captures: datasets, resources,
-- tags, organizations and groups with their members, users and API tokens, with the
-- column names and types CKAN 2.12 uses. The demo and the tests load it into an empty
-- database to stand in for a real CKAN; attaching to a real portal never uses it.

CREATE TABLE public."user" (
    id text PRIMARY KEY,
    name text NOT NULL UNIQUE,
    apikey text,
    created timestamp without time zone,
    about text,
    password text,
    fullname text,
    email text,
    reset_key text,
    sysadmin boolean DEFAULT false,
    activity_streams_email_notifications boolean DEFAULT false,
    state text DEFAULT 'active' NOT NULL,
    plugin_extras jsonb,
    image_url text,
    last_active timestamp without time zone
);

CREATE TABLE public.api_token (
    id text PRIMARY KEY,
    name text,
    user_id text REFERENCES public."user" (id),
    created_at timestamp without time zone DEFAULT CURRENT_TIMESTAMP,
    last_access timestamp without time zone,
    plugin_extras jsonb
);

CREATE TABLE public."group" (
    id text PRIMARY KEY,
    name text NOT NULL UNIQUE,
    title text,
    description text,
    created timestamp without time zone,
    state text,
    type text NOT NULL,
    approval_status text,
    image_url text,
    is_organization boolean DEFAULT false,
    extras jsonb
);

CREATE TABLE public.package (
    id text PRIMARY KEY,
    name character varying(100) NOT NULL UNIQUE,
    title text,
    version character varying(100),
    url text,
    notes text,
    author text,
    author_email text,
    maintainer text,
    maintainer_email text,
    state text,
    license_id text,
    type text,
    owner_org text,
    private boolean DEFAULT false,
    metadata_modified timestamp without time zone,
    creator_user_id text,
    metadata_created timestamp without time zone,
    plugin_data jsonb,
    extras jsonb
);

CREATE TABLE public.resource (
    id text PRIMARY KEY,
    url text NOT NULL,
    format text,
    description text,
    "position" integer,
    hash text,
    state text,
    extras text,
    name text,
    resource_type text,
    mimetype text,
    mimetype_inner text,
    size bigint,
    last_modified timestamp without time zone,
    cache_url text,
    cache_last_updated timestamp without time zone,
    created timestamp without time zone,
    url_type text,
    package_id text DEFAULT '' NOT NULL REFERENCES public.package (id),
    metadata_modified timestamp without time zone
);

CREATE TABLE public.tag (
    id text PRIMARY KEY,
    name character varying(100) NOT NULL,
    vocabulary_id character varying(100)
);

CREATE TABLE public.package_tag (
    id text PRIMARY KEY,
    state text,
    package_id text REFERENCES public.package (id),
    tag_id text REFERENCES public.tag (id)
);

CREATE TABLE public.member (
    id text PRIMARY KEY,
    group_id text REFERENCES public."group" (id),
    table_id text NOT NULL,
    state text,
    table_name text NOT NULL,
    capacity text NOT NULL
);

CREATE TABLE public.package_member (
    package_id text NOT NULL REFERENCES public.package (id),
    user_id text NOT NULL REFERENCES public."user" (id),
    capacity text NOT NULL,
    modified timestamp without time zone NOT NULL,
    PRIMARY KEY (package_id, user_id)
);

CREATE TABLE public.alembic_version (
    version_num character varying(32) PRIMARY KEY
);
