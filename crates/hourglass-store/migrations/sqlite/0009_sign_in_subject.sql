-- The identity provider's account a person signed in with first (`issuer#subject`): later
-- sign-ins under the same name must come from the same account.
ALTER TABLE identities ADD COLUMN sign_in_subject TEXT;
