-- One schema per domain; each pool owns its own.
CREATE SCHEMA auth;
CREATE SCHEMA billing;
CREATE SCHEMA analytics;
CREATE SCHEMA admin;
CREATE SCHEMA jobs;
